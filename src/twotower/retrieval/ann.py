"""Search through FAISS (Johnson, Douze and Jégou 2019) indexes: its flat index, and approximate
indexes for corpora too large to search exactly (at every refresh round, or once for mining and
evaluation).

Three index types over inner products, the score exact search uses (cosine for the usual
L2-normalised embeddings):

- ``flat``: every document scored (``IndexFlatIP``): the exact top k, with equal scores in the
  order FAISS leaves them rather than document order;
- ``ivf``: an inverted file (k-means cells, ``lists`` of them; a query visits the ``probe``
  nearest cells), flat vectors inside the cells;
- ``hnsw``: a hierarchical navigable small-world graph (Malkov and Yashunin 2018) with
  ``neighbors`` links per node, searched with a candidate list of ``search_depth``.

All return a :class:`~twotower.retrieval.dense.Run` exactly as
:func:`~twotower.retrieval.dense.exact_run` does, so a caller swaps one for the other, and
:func:`recall_against_exact` measures what an approximate index lost. ANCE's own "ANN" index was
exact inner-product search (Xiong et al. 2021); ``exact`` stays the default: FAISS's brute-force
k-NN where FAISS is installed, torch's blockwise search where not, equal scores in document order
either way (:func:`~twotower.retrieval.dense.exact_search`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from twotower.errors import ConfigError
from twotower.retrieval.dense import Run, exact_run

log = logging.getLogger(__name__)

IndexType = Literal["exact", "flat", "ivf", "hnsw"]
INDEX_TYPES: tuple[str, ...] = ("exact", "flat", "ivf", "hnsw")
# Queries whose approximate top k is compared with the exact one (recall_against_exact).
RECALL_SAMPLE = 1000
# Below this recall against exact search an index is reported as a warning, with what to raise:
# on SciFact, IVF at probe 16 kept 0.82 of the exact top 100 and lost 0.047 NDCG@10 (p < 0.001).
LOW_RECALL = 0.95


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def require_faiss(key: str) -> None:
    """Refuse a FAISS index where FAISS is not installed, naming the recipe key or option."""
    if not faiss_available():
        raise ConfigError(f"{key}: a FAISS index needs FAISS (pip install faiss-cpu)")


@dataclass(frozen=True)
class IndexSettings:
    """How to search: ``exact`` or an approximate index with its knobs (None: a default from the
    corpus size and the search depth)."""

    type: IndexType = "exact"
    lists: int | None = None  # ivf: k-means cells; default 4·√N, at most N / 39
    probe: int = 16  # ivf: cells visited per query
    neighbors: int = 32  # hnsw: links per node
    search_depth: int | None = None  # hnsw: candidate list while searching; default max(2·k, 128)

    def __post_init__(self) -> None:
        if self.type not in INDEX_TYPES:
            raise ConfigError(
                f"index type must be one of {', '.join(INDEX_TYPES)}, got {self.type!r}"
            )
        for name in ("lists", "search_depth"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.probe < 1 or self.neighbors < 2:
            raise ConfigError("probe must be positive and neighbors at least 2")

    @property
    def approximate(self) -> bool:
        return self.type in ("ivf", "hnsw")

    def describe(self) -> str:
        """``exact``, ``flat``, ``ivf(lists=…, probe=…)`` or ``hnsw(neighbors=…)``: for logs,
        results and the cache keys of what an approximate index found."""
        if self.type == "ivf":
            return f"ivf(lists={self.lists or 'auto'}, probe={self.probe})"
        if self.type == "hnsw":
            return f"hnsw(neighbors={self.neighbors}, depth={self.search_depth or 'auto'})"
        return self.type


def _ivf_lists(settings: IndexSettings, n: int) -> int:
    # FAISS wants about 39 training points per cell; 4·√N is its usual starting point.
    wanted = settings.lists or int(4 * math.sqrt(n))
    return max(1, min(wanted, n // 39 or 1))


def build_index(documents: np.ndarray, settings: IndexSettings, k: int):
    """A FAISS inner-product index over ``documents``, ready to search ``k`` deep."""
    import faiss

    vectors = np.ascontiguousarray(documents, dtype=np.float32)
    n, dim = vectors.shape
    index: faiss.Index
    if settings.type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif settings.type == "ivf":
        lists = _ivf_lists(settings, n)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vectors)
        ivf.nprobe = min(settings.probe, lists)
        index = ivf
    elif settings.type == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, settings.neighbors, faiss.METRIC_INNER_PRODUCT)
        # Wider candidate lists than FAISS's defaults (40, 16): near-tied neighbours are the rule
        # among embeddings of one domain, and the top 200 of ANCE is deep.
        hnsw.hnsw.efConstruction = 4 * settings.neighbors
        hnsw.hnsw.efSearch = max(settings.search_depth or max(2 * k, 128), k)
        index = hnsw
    else:
        raise ConfigError("build_index is for FAISS indexes; exact search needs none")
    index.add(vectors)
    return index


def search_run(
    query_ids: Sequence[str],
    queries: np.ndarray,
    doc_ids: Sequence[str],
    documents: np.ndarray,
    k: int,
    settings: IndexSettings = IndexSettings(),
    *,
    ignore_identical_ids: bool = False,
) -> Run:
    """The top ``k`` of every query, exactly or through the FAISS index of ``settings``; slots
    an approximate index leaves empty (fewer than ``k`` found) are dropped. With
    ``ignore_identical_ids``, one more is searched so that dropping the document with the query's
    own id still leaves ``k``."""
    if settings.type == "exact":
        return exact_run(
            query_ids, queries, doc_ids, documents, k, ignore_identical_ids=ignore_identical_ids
        )
    depth = min(k + int(ignore_identical_ids), len(doc_ids))
    index = build_index(documents, settings, depth)
    scores, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
    run: Run = {}
    for row, query_id in enumerate(query_ids):
        ranked = {}
        for score, i in zip(scores[row].tolist(), indices[row].tolist(), strict=True):
            if i < 0 or (ignore_identical_ids and doc_ids[i] == query_id):
                continue
            ranked[doc_ids[i]] = score
            if len(ranked) == k:
                break
        run[query_id] = ranked
    return run


def recall_against_exact(
    run: Run,
    query_ids: Sequence[str],
    queries: np.ndarray,
    doc_ids: Sequence[str],
    documents: np.ndarray,
    k: int,
    *,
    sample: int = RECALL_SAMPLE,
    seed: int = 0,
    ignore_identical_ids: bool = False,
) -> float:
    """Share of the exact top ``k`` that ``run`` (from an index) holds, over up to ``sample``
    queries drawn with ``seed``: what the index lost, measured on the collection at hand rather
    than assumed (IVF keeps ≥ 0.9 on clustered embeddings and ~0.1 on random vectors)."""
    rows = np.arange(len(query_ids))
    if len(rows) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(rows, sample, replace=False))
    ids = [query_ids[r] for r in rows.tolist()]
    exact = exact_run(
        ids, queries[rows], doc_ids, documents, k, ignore_identical_ids=ignore_identical_ids
    )
    wanted = sum(len(ranked) for ranked in exact.values())
    found = sum(len(exact[q].keys() & set(list(run.get(q, {}))[:k])) for q in ids)
    return found / wanted if wanted else 1.0


def log_recall(what: str, settings: IndexSettings, k: int, recall: float) -> None:
    """One line with an index's recall against exact search: a warning naming the knob to raise
    where it is below :data:`LOW_RECALL`."""
    line = f"{what}: {settings.describe()} index, recall@{k} against exact search {recall:.3f}"
    if recall >= LOW_RECALL:
        log.info(line)
        return
    knob = "ivf_probe (--ivf-probe)" if settings.type == "ivf" else "hnsw_neighbors"
    log.warning("%s, below %.2f: raise %s or search exactly", line, LOW_RECALL, knob)


def checked_recall(
    run: Run,
    query_ids: Sequence[str],
    queries: np.ndarray,
    doc_ids: Sequence[str],
    documents: np.ndarray,
    k: int,
    settings: IndexSettings,
    what: str,
    *,
    ignore_identical_ids: bool = False,
) -> float | None:
    """For a run of :func:`search_run` through an approximate index, its recall against exact
    search (:func:`recall_against_exact`), logged with :func:`log_recall` as ``what``; None for
    an exact search, which loses nothing."""
    if not settings.approximate:
        return None
    recall = recall_against_exact(
        run, query_ids, queries, doc_ids, documents, k, ignore_identical_ids=ignore_identical_ids
    )
    log_recall(what, settings, k, recall)
    return recall
