"""Exact inner-product search over normalised embeddings (batched matmul + top-k)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from twotower.retrieval import Run


def exact_search(
    queries: np.ndarray, documents: np.ndarray, k: int, *, query_block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, indices) of ``documents`` for each query by inner product, exact."""
    k = min(k, documents.shape[0])
    docs = torch.from_numpy(np.ascontiguousarray(documents, dtype=np.float32))
    scores_out = np.empty((queries.shape[0], k), dtype=np.float32)
    index_out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], query_block):
        block = torch.from_numpy(
            np.ascontiguousarray(queries[start : start + query_block], dtype=np.float32)
        )
        scores, indices = torch.topk(block @ docs.T, k, dim=1)
        scores_out[start : start + len(block)] = scores.numpy()
        index_out[start : start + len(block)] = indices.numpy()
    return scores_out, index_out


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
