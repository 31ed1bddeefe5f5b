"""Approximate nearest-neighbour search with FAISS (Johnson, Douze and Jégou 2019), for corpora too
large to search exactly at every refresh round.

Two index types over inner products, the score exact search uses (cosine for the usual
L2-normalised embeddings):

- ``ivf``: an inverted file (k-means cells, ``lists`` of them; a query visits the ``probe``
  nearest cells), flat vectors inside the cells;
- ``hnsw``: a hierarchical navigable small-world graph (Malkov and Yashunin 2018) with
  ``neighbors`` links per node, searched with a candidate list of ``search_depth``.

Both return a :class:`~twotower.retrieval.dense.Run` exactly as
:func:`~twotower.retrieval.dense.exact_run` does, so a caller swaps one for the other. ANCE's
own "ANN" index was exact inner-product search (Xiong et al. 2021); exact search stays the
default. FAISS is an optional dependency (``pip install faiss-cpu``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from twotower.errors import ConfigError
from twotower.retrieval.dense import Run, exact_run, to_run

IndexType = Literal["exact", "ivf", "hnsw"]
INDEX_TYPES: tuple[str, ...] = ("exact", "ivf", "hnsw")


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def require_faiss(key: str) -> None:
    """Refuse an approximate index where FAISS is not installed, naming the recipe key."""
    if not faiss_available():
        raise ConfigError(f"{key}: an approximate index needs FAISS (pip install faiss-cpu)")


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


def _ivf_lists(settings: IndexSettings, n: int) -> int:
    # FAISS wants about 39 training points per cell; 4·√N is its usual starting point.
    wanted = settings.lists or int(4 * math.sqrt(n))
    return max(1, min(wanted, n // 39 or 1))


def build_index(documents: np.ndarray, settings: IndexSettings, k: int):
    """A FAISS inner-product index over ``documents``, ready to search ``k`` deep."""
    import faiss

    vectors = np.ascontiguousarray(documents, dtype=np.float32)
    n, dim = vectors.shape
    if settings.type == "ivf":
        lists = _ivf_lists(settings, n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(settings.probe, lists)
    elif settings.type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.neighbors, faiss.METRIC_INNER_PRODUCT)
        # Wider candidate lists than FAISS's defaults (40, 16): near-tied neighbours are the rule
        # among embeddings of one domain, and the top 200 of ANCE is deep.
        index.hnsw.efConstruction = 4 * settings.neighbors
        index.hnsw.efSearch = max(settings.search_depth or max(2 * k, 128), k)
    else:
        raise ConfigError("build_index is for approximate indexes; exact search needs none")
    index.add(vectors)
    return index


def search_run(
    query_ids: Sequence[str],
    queries: np.ndarray,
    doc_ids: Sequence[str],
    documents: np.ndarray,
    k: int,
    settings: IndexSettings = IndexSettings(),
) -> Run:
    """The top ``k`` of every query, exactly or through the approximate index of ``settings``;
    slots an approximate index leaves empty (fewer than ``k`` found) are dropped."""
    if settings.type == "exact":
        return exact_run(query_ids, queries, doc_ids, documents, k)
    k = min(k, len(doc_ids))
    index = build_index(documents, settings, k)
    scores, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    found = indices >= 0
    if found.all():
        return to_run(query_ids, doc_ids, scores, indices)
    return {
        query_id: {
            doc_ids[i]: float(s)
            for s, i, ok in zip(scores[r], indices[r], found[r], strict=True)
            if ok
        }
        for r, query_id in enumerate(query_ids)
    }
