"""Hard negative queries for DANCE's dual loss (METHODS §2).

For each positive document of a training query: search an index of all training-query
embeddings with the document's embedding, take the top ``window.end`` (200), drop the queries
that have that document as a positive (under the split's qrels), and sample ``count`` (20).
Result: a :class:`NegativesTable` of kind ``"queries"`` (document id → negative query ids).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from twotower.data.collection import Collection
from twotower.errors import ConfigError
from twotower.negatives import cache as mining_cache
from twotower.negatives.mine import MiningStats, RankWindow, training_query_ids
from twotower.negatives.retrievers import Retriever
from twotower.negatives.table import NegativesTable, rng_for


def positive_queries_by_document(collection: Collection) -> dict[str, list[str]]:
    """Document id → the queries (of the split's qrels) that judge it relevant."""
    out: dict[str, list[str]] = {}
    for qid, judged in collection.qrels.items():
        for doc_id, grade in judged.items():
            if grade > 0:
                out.setdefault(doc_id, []).append(qid)
    return out


def mine_negative_queries(
    collection: Collection,
    retriever: Retriever,
    *,
    window: RankWindow = RankWindow(1, 200),
    count: int = 20,
    seed: int = 0,
    query_ids: Sequence[str] | None = None,
    use_cache: bool = True,
) -> tuple[NegativesTable, MiningStats]:
    """Hard negative queries for every positive document of the training queries."""
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    started = time.perf_counter()
    if query_ids is None:
        query_ids = training_query_ids(collection)
    else:
        unknown = [q for q in query_ids if q not in collection.queries]
        if unknown:
            raise ConfigError(f"unknown query id '{unknown[0]}'")
        query_ids = list(query_ids)
    index_set = set(query_ids)
    positive_of = positive_queries_by_document(collection)
    doc_ids = [
        d
        for d in dict.fromkeys(d for q in query_ids for d in sorted(collection.positives(q)))
        if d in collection.corpus.index
    ]
    settings = {
        "what": "queries",
        "retriever": retriever.fingerprint,
        "window": str(window),
        "count": count,
        "seed": seed,
        "index": sorted(index_set),
    }
    key = mining_cache.mining_key(collection, doc_ids, settings)
    if use_cache:
        hit = mining_cache.load_cached(key, "queries")
        if hit is not None:
            table, stats_json = hit
            table.meta.update(cache_key=key)
            return table, MiningStats(
                **{**stats_json, "cached": True, "seconds": time.perf_counter() - started}
            )
    run = (
        retriever.run_reverse(collection, doc_ids, query_ids, min(window.end, len(query_ids)))
        if doc_ids
        else {}
    )
    negatives: dict[str, list[str]] = {}
    ranks: dict[str, list[int]] = {}
    positives: dict[str, list[str]] = {}
    stats = MiningStats(anchors=len(doc_ids))
    for doc_id in doc_ids:
        excluded = set(positive_of.get(doc_id, ()))
        candidates = [
            (rank, qid)
            for rank, qid in enumerate(run.get(doc_id, {}), start=1)
            if rank in window and qid not in excluded
        ]
        stats.candidates += len(candidates)
        if count and len(candidates) > count:
            chosen = sorted(
                rng_for(seed, doc_id).choice(len(candidates), size=count, replace=False).tolist()
            )
            candidates = [candidates[i] for i in chosen]
        negatives[doc_id] = [qid for _, qid in candidates]
        ranks[doc_id] = [rank for rank, _ in candidates]
        positives[doc_id] = [q for q in positive_of.get(doc_id, []) if q in index_set]
    stats.negatives = sum(len(v) for v in negatives.values())
    stats.short = sum(1 for v in negatives.values() if count and len(v) < count)
    stats.seconds = time.perf_counter() - started
    table = NegativesTable(
        negatives, ranks, positives, "queries", {"settings": settings, "cache_key": key}
    )
    if use_cache:
        mining_cache.store(
            key, table, {k: v for k, v in stats.to_json().items() if k not in ("cached", "seconds")}
        )
    return table, stats
