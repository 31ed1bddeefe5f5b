"""Exact inner-product search and the L2 normaliser of numpy rows.

One exact search, two engines with the same answer: FAISS's brute-force k-NN (``faiss.knn``:
BLAS blocks and a heap per query, about twice as fast on a CPU, Johnson, Douze and Jégou 2019)
where FAISS is installed, else a blockwise torch matmul and top-k. Both keep equal scores in
document order; ``TWOTOWER_BACKEND=torch`` forces torch's path. Neither holds the queries-by-
documents score matrix, so memory stays bounded by the vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from twotower.errors import ConfigError
from twotower.retrieval import Run
from twotower.settings import backend_override

# Scores held at once while searching: 64 MiB of float32, a block of queries by a block of
# documents. Queries go QUERY_BLOCK at a time, so the document block shrinks to fit.
BLOCK_SCORES = 1 << 24
QUERY_BLOCK = 1024
# An exact-search engine's arguments and answer: (scores, document rows) of each query's top k.
Vectors = np.ndarray
Skip = np.ndarray | None
Found = tuple[np.ndarray, np.ndarray]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their L2 norm, floored at ``eps`` as sentence-transformers does
    (``torch.nn.functional.normalize``), so all-zero rows stay zero. Floating input keeps its
    dtype; any other becomes float32."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def faiss_search_available() -> bool:
    """Whether :func:`exact_search` runs through FAISS: installed, and not overridden."""
    if backend_override() == "torch":
        return False
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def exact_search(
    queries: np.ndarray,
    documents: np.ndarray,
    k: int,
    *,
    exclude: Sequence[int] | np.ndarray | None = None,
    block_scores: int = BLOCK_SCORES,
    engine: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` documents of each query by inner product, exact: (scores, indices), float32 and
    int64, each (len(queries), min(k, len(documents))), best first, equal scores in document
    order.

    ``engine``: ``faiss`` or ``torch`` (default: FAISS where :func:`faiss_search_available`).
    Torch's path holds at most ``block_scores`` scores at once (a block of queries by a block
    of documents), FAISS's its own blocks, whatever the corpus size. ``exclude[i]`` is a
    document row never returned for query i, or -1 for none (the query itself where queries are
    also documents); a slot left with only that document holds score -inf and index -1.
    """
    if engine not in (None, "faiss", "torch"):
        raise ConfigError(f"exact search engine: faiss or torch, got {engine!r}")
    if k < 0:
        raise ConfigError(f"k must be >= 0, got {k}")
    n, m = queries.shape[0], documents.shape[0]
    k = min(k, m)
    skip = None
    if exclude is not None:
        skip = np.asarray(exclude, dtype=np.int64).reshape(-1)
        if skip.shape[0] != n:
            raise ValueError(f"exclude has {skip.shape[0]} entries for {n} queries")
    if n == 0 or k == 0:
        return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
    if engine == "faiss" or (engine is None and faiss_search_available()):
        return _faiss_search(queries, documents, k, skip, block_scores)
    return _torch_search(queries, documents, k, skip, block_scores)


def _torch_search(
    queries: Vectors, documents: Vectors, k: int, skip: Skip, block_scores: int
) -> Found:
    """Blockwise matmul and top-k (:func:`_top_k`), blocks merged by a stable sort; ``k`` at
    most the corpus size and above 0 (:func:`exact_search` checks)."""
    n, m = queries.shape[0], documents.shape[0]
    scores_out = np.full((n, k), -np.inf, dtype=np.float32)
    index_out = np.full((n, k), -1, dtype=np.int64)
    docs = torch.from_numpy(np.ascontiguousarray(documents, dtype=np.float32))
    rows = max(1, min(n, QUERY_BLOCK, block_scores))
    blocks = -(-m // max(1, block_scores // rows))
    width = -(-m // blocks)  # equal document blocks: no sliver left over at the end
    for start in range(0, n, rows):
        block = torch.from_numpy(
            np.ascontiguousarray(queries[start : start + rows], dtype=np.float32)
        )
        best: tuple[torch.Tensor, torch.Tensor] | None = None
        for first in range(0, m, width):
            scores = block @ docs[first : first + width].T
            if skip is not None:
                local = skip[start : start + len(block)] - first
                hit = np.flatnonzero((local >= 0) & (local < scores.shape[1]))
                scores[torch.from_numpy(hit), torch.from_numpy(local[hit])] = -torch.inf
            top_scores, top_index = _top_k(scores, min(k, scores.shape[1]))
            top_index += first
            if best is not None:
                # Earlier blocks hold lower rows, so a stable sort keeps equal scores in order.
                top_scores = torch.cat([best[0], top_scores], dim=1)
                top_index = torch.cat([best[1], top_index], dim=1)
                order = torch.sort(top_scores, dim=1, descending=True, stable=True).indices[:, :k]
                top_scores, top_index = top_scores.gather(1, order), top_index.gather(1, order)
            best = (top_scores, top_index)
        assert best is not None  # k > 0, so m > 0: at least one block of documents
        scores_out[start : start + len(block)] = best[0].numpy()
        index_out[start : start + len(block)] = best[1].numpy()
    if skip is not None:
        index_out[index_out == skip[:, None]] = -1
    return scores_out, index_out


def _faiss_search(
    queries: Vectors, documents: Vectors, k: int, skip: Skip, block_scores: int
) -> Found:
    """FAISS's k-NN one row deeper than asked (two with ``skip``), equal scores put in
    document order; a row whose k-th and next score are equal (a tie across the cut, where
    FAISS may have kept any of the tied) is searched again by torch's path, which resolves it."""
    import faiss

    n, m = queries.shape[0], documents.shape[0]
    depth = min(m, k + 1 + int(skip is not None))
    scores, index = faiss.knn(
        np.ascontiguousarray(queries, dtype=np.float32),
        np.ascontiguousarray(documents, dtype=np.float32),
        depth,
        metric=faiss.METRIC_INNER_PRODUCT,
    )
    if skip is not None:
        dropped = index == skip[:, None]
        scores[dropped], index[dropped] = -np.inf, m  # last among equals, then cut
    order = np.lexsort((index, -scores), axis=-1)
    scores, index = np.take_along_axis(scores, order, 1), np.take_along_axis(index, order, 1)
    straddling = np.zeros(n, dtype=bool)
    if depth > k:
        straddling = (scores[:, k] == scores[:, k - 1]) & np.isfinite(scores[:, k])
    scores, index = scores[:, :k].copy(), index[:, :k].copy()
    index[~np.isfinite(scores)] = -1
    rows = np.flatnonzero(straddling)
    if len(rows):
        again = _torch_search(
            queries[rows], documents, k, None if skip is None else skip[rows], block_scores
        )
        scores[rows], index[rows] = again
    return scores, index


def _top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of each row, best first, equal scores by column: ``torch.topk`` leaves both
    their order and, where they straddle the cut, which of them are kept to chance."""
    wider = min(k + 1, scores.shape[1])  # the (k+1)-th equal to the k-th: a tie straddles the cut
    values, columns = torch.topk(scores, wider, dim=1)
    if wider > k:
        straddling = torch.nonzero(values[:, k] == values[:, k - 1]).flatten().tolist()
        values, columns = values[:, :k], columns[:, :k]
        for row in straddling:
            candidates = torch.nonzero(scores[row] >= values[row, -1]).flatten()  # column order
            order = torch.sort(scores[row, candidates], descending=True, stable=True).indices[:k]
            columns[row] = candidates[order]
            values[row] = scores[row, columns[row]]
    tied = torch.nonzero((values[:, 1:] == values[:, :-1]).any(dim=1)).flatten()
    if len(tied):
        by_column = torch.argsort(columns[tied], dim=1)
        tied_values, tied_columns = (
            values[tied].gather(1, by_column),
            columns[tied].gather(1, by_column),
        )
        by_score = torch.sort(tied_values, dim=1, descending=True, stable=True).indices
        values[tied], columns[tied] = (
            tied_values.gather(1, by_score),
            tied_columns.gather(1, by_score),
        )
    return values, columns


def exact_run(
    query_ids: Sequence[str],
    queries: np.ndarray,
    doc_ids: Sequence[str],
    documents: np.ndarray,
    k: int,
    *,
    ignore_identical_ids: bool = False,
) -> Run:
    """:func:`exact_search` as a run of the top ``k``; with ``ignore_identical_ids``, one more
    is searched so that dropping the document with the query's own id still leaves ``k``."""
    scores, indices = exact_search(queries, documents, k + int(ignore_identical_ids))
    return to_run(query_ids, doc_ids, scores, indices, ignore_identical_ids=ignore_identical_ids)


def to_run(
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    scores: np.ndarray,
    indices: np.ndarray,
    *,
    ignore_identical_ids: bool = False,
) -> Run:
    run: Run = {}
    for row, query_id in enumerate(query_ids):
        ranked = {}
        for score, index in zip(scores[row].tolist(), indices[row].tolist(), strict=True):
            doc_id = doc_ids[index]
            if ignore_identical_ids and doc_id == query_id:
                continue
            ranked[doc_id] = score
        run[query_id] = ranked
    return run
