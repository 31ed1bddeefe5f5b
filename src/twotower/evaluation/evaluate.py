"""Evaluate BM25, a dense model, or their fusion on one collection split."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from twotower.data.collection import Collection
from twotower.evaluation.metrics import DEFAULT_METRICS, evaluate_run, max_cutoff
from twotower.models.embedding_cache import encode_corpus, encode_queries
from twotower.models.encoder import Encoder
from twotower.retrieval import Run
from twotower.retrieval.ann import IndexSettings, checked_recall, search_run
from twotower.retrieval.bm25 import BM25
from twotower.retrieval.dense import exact_run
from twotower.retrieval.fusion import FUSION_DEPTH, FusionMethod, check_alpha, fuse

# Depth of the ranking kept per query: enough for every metric cut-off.
MIN_DEPTH = 100


@dataclass
class EvalResult:
    system: str
    data: str
    split: str
    metrics: dict[str, float]
    n_queries: int
    per_query: dict[str, dict[str, float]]
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_query_ndcg@10"] = {
            q: v.get("ndcg@10") for q, v in self.per_query.items() if "ndcg@10" in v
        }
        del out["per_query"]
        return out


def judged_queries(collection: Collection) -> tuple[list[str], list[str]]:
    ids = collection.judged_query_ids
    return ids, [collection.queries[q] for q in ids]


def bm25_run(
    collection: Collection, depth: int, ignore_identical_ids: bool, timings: dict[str, float]
) -> Run:
    start = time.perf_counter()
    bm25 = BM25().index(collection.corpus.ids, collection.corpus.texts)
    timings["bm25_index_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ids, texts = judged_queries(collection)
    run = bm25.run(ids, texts, depth, ignore_identical_ids=ignore_identical_ids)
    timings["bm25_search_s"] = time.perf_counter() - start
    return run


def dense_run(
    encoder: Encoder,
    collection: Collection,
    depth: int,
    ignore_identical_ids: bool,
    timings: dict[str, float],
    *,
    use_cache: bool = True,
    index: IndexSettings = IndexSettings(),
) -> Run:
    """The encoder's top ``depth`` for the judged queries, exactly or through ``index``; an
    approximate index's recall against exact search goes to ``timings["index_recall"]``."""
    start = time.perf_counter()
    documents, cached = encode_corpus(encoder, collection.corpus, use_cache=use_cache)
    timings["corpus_encode_s"] = time.perf_counter() - start
    timings["corpus_cached"] = float(cached)
    start = time.perf_counter()
    ids, texts = judged_queries(collection)
    queries, queries_cached = encode_queries(encoder, texts, use_cache=use_cache)
    timings["queries_cached"] = float(queries_cached)
    timings["query_encode_s"] = time.perf_counter() - start
    start = time.perf_counter()
    found = (ids, queries, collection.corpus.ids, documents, depth)
    run = search_run(*found, index, ignore_identical_ids=ignore_identical_ids)
    timings["search_s"] = time.perf_counter() - start
    what = f"{encoder.name} on {collection.path.name}"
    recall = checked_recall(run, *found, index, what, ignore_identical_ids=ignore_identical_ids)
    if recall is not None:
        timings["index_recall"] = recall
    return run


def score(
    run: Run, collection: Collection, system: str, metrics, timings, *, judged=None, **details
) -> EvalResult:
    """Metrics of ``run`` against the collection's qrels (or ``judged``, e.g. reversed ones)."""
    if judged is None:
        judged = {q: collection.qrels[q] for q in collection.judged_query_ids}
    means, per_query = evaluate_run(run, judged, metrics)
    return EvalResult(
        system,
        str(collection.path),
        collection.split,
        means,
        len(judged),
        per_query,
        timings,
        details,
    )


def evaluate_dual(
    collection: Collection,
    encoders: list[Encoder],
    *,
    metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
    use_cache: bool = True,
) -> list[EvalResult]:
    """DANCE's dual task (Li et al. 2021): each relevant document, embedded by the document
    tower, ranks all of the split's judged queries (query tower) for the queries that judge it
    relevant; the same metrics, over documents."""
    judged = collection.judging_queries()
    doc_ids = list(judged)
    query_ids, texts = judged_queries(collection)
    depth = max(MIN_DEPTH, max_cutoff(metrics))
    results = []
    for encoder in encoders:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        documents, _ = encode_corpus(encoder, collection.corpus, use_cache=use_cache)
        queries, _ = encode_queries(encoder, texts, use_cache=use_cache)
        rows = [collection.corpus.index[d] for d in doc_ids]
        run = exact_run(doc_ids, documents[rows], query_ids, queries, min(depth, len(query_ids)))
        timings["total_s"] = time.perf_counter() - start
        details = {"task": "dual", "model": encoder.name, "fingerprint": encoder.fingerprint}
        results.append(
            score(
                run,
                collection,
                f"{encoder.name} (dual)",
                metrics,
                timings,
                judged=judged,
                **details,
            )
        )
    return results


def evaluate_systems(
    collection: Collection,
    *,
    encoders: list[Encoder] | None = None,
    bm25: bool = False,
    fusion: FusionMethod | None = None,
    alpha: float = 0.5,
    metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
    ignore_identical_ids: bool | None = None,
    use_cache: bool = True,
    index: IndexSettings = IndexSettings(),
) -> list[EvalResult]:
    """BM25 (if asked), each dense encoder, and each encoder fused with BM25 (if ``fusion``);
    ``index``: how the dense models search (exact by default)."""
    if fusion == "linear":
        check_alpha(alpha)  # before any encoding, not after
    depth = max(MIN_DEPTH, max_cutoff(metrics))
    if fusion:
        depth = max(depth, FUSION_DEPTH)
    if ignore_identical_ids is None:
        ignore_identical_ids = collection.ids_are_shared()
    results: list[EvalResult] = []
    bm25_cache: tuple[Run, dict[str, float]] | None = None
    if bm25 or fusion:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        run = bm25_run(collection, depth, ignore_identical_ids, timings)
        timings["total_s"] = time.perf_counter() - start
        bm25_cache = (run, timings)
        if bm25:
            results.append(score(run, collection, "bm25", metrics, timings, k1=0.9, b=0.4))
    for encoder in encoders or []:
        timings = {}
        start = time.perf_counter()
        run = dense_run(
            encoder,
            collection,
            depth,
            ignore_identical_ids,
            timings,
            use_cache=use_cache,
            index=index,
        )
        timings["total_s"] = time.perf_counter() - start
        details = {
            "model": encoder.name,
            "fingerprint": encoder.fingerprint,
            "max_length": encoder.max_length,
            "index": index.describe(),
        }
        results.append(score(run, collection, encoder.name, metrics, timings, **details))
        if fusion and bm25_cache is not None:
            fused = fuse(bm25_cache[0], run, fusion, alpha=alpha, k=depth)
            name = f"bm25+{encoder.name} ({fusion}{f', α={alpha}' if fusion == 'linear' else ''})"
            results.append(
                score(fused, collection, name, metrics, {}, fusion=fusion, alpha=alpha, **details)
            )
    return results
