"""Exact search (both engines) against a brute-force reference, its memory bound, runs, and the
normaliser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twotower.retrieval import dense
from twotower.retrieval.dense import exact_run, exact_search, faiss_search_available, l2_normalize

ENGINES = ["torch", "faiss"]


def small_integer_embeddings(rows: int, dim: int, seed: int) -> np.ndarray:
    """Entries in {-2..2}: every score is an exact small integer, so ties are everywhere."""
    return np.random.default_rng(seed).integers(-2, 3, size=(rows, dim)).astype(np.float32)


def reference_search(queries, documents, k, exclude=None):
    """Every score, then a full sort by (score descending, document row ascending)."""
    scores = queries.astype(np.float64) @ documents.astype(np.float64).T
    top_scores, top_index = [], []
    for i, row in enumerate(scores):
        rows = [j for j in range(len(row)) if exclude is None or j != exclude[i]]
        ranked = sorted(rows, key=lambda j: (-row[j], j))[:k]
        top_index.append(ranked)
        top_scores.append([row[j] for j in ranked])
    return np.array(top_scores), np.array(top_index)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("block_scores", [1, 5, 37, 1 << 24])
@pytest.mark.parametrize("k", [1, 4, 13])
def test_exact_search_is_the_brute_force_ranking_ties_by_document_order(block_scores, k, engine):
    queries, documents = small_integer_embeddings(9, 3, seed=0), small_integer_embeddings(40, 3, 1)
    scores, indices = exact_search(queries, documents, k, block_scores=block_scores, engine=engine)
    want_scores, want_index = reference_search(queries, documents, k)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    np.testing.assert_array_equal(indices, want_index)
    np.testing.assert_array_equal(scores, want_scores)
    # Ties straddle the cut in this set, so the choice among them was really exercised.
    full = queries @ documents.T
    kth = np.sort(full, axis=1)[:, ::-1][:, k - 1]
    assert ((full == kth[:, None]).sum(axis=1) > 1).any()


@pytest.mark.parametrize("engine", ENGINES)
def test_exact_search_on_real_valued_embeddings_matches_the_reference(engine):
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    documents = rng.standard_normal((300, 16)).astype(np.float32)
    scores, indices = exact_search(queries, documents, 20, block_scores=700, engine=engine)
    want_scores, want_index = reference_search(queries, documents, 20)
    np.testing.assert_array_equal(indices, want_index)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
def test_k_beyond_the_corpus_returns_every_document(engine):
    queries, documents = small_integer_embeddings(4, 3, seed=5), small_integer_embeddings(6, 3, 6)
    scores, indices = exact_search(queries, documents, 50, block_scores=4, engine=engine)
    want_scores, want_index = reference_search(queries, documents, 6)
    assert indices.shape == scores.shape == (4, 6)
    np.testing.assert_array_equal(indices, want_index)
    np.testing.assert_array_equal(scores, want_scores)
    assert exact_search(queries, documents, 0, engine=engine)[1].shape == (4, 0)
    assert exact_search(queries[:0], documents, 3, engine=engine)[1].shape == (0, 3)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("block_scores", [3, 1 << 24])
def test_exclude_drops_one_document_per_query(block_scores, engine):
    queries, documents = small_integer_embeddings(7, 3, seed=8), small_integer_embeddings(7, 3, 9)
    exclude = [0, -1, 2, 6, -1, 5, 3]
    scores, indices = exact_search(
        queries, documents, 4, exclude=exclude, block_scores=block_scores, engine=engine
    )
    want_scores, want_index = reference_search(queries, documents, 4, exclude=exclude)
    np.testing.assert_array_equal(indices, want_index)
    np.testing.assert_array_equal(scores, want_scores)
    # k = corpus size: an excluded query has one slot too many, left at -inf / -1.
    scores, indices = exact_search(
        queries, documents, 7, exclude=exclude, block_scores=block_scores, engine=engine
    )
    for row, skipped in enumerate(exclude):
        if skipped >= 0:
            assert skipped not in indices[row] and indices[row, -1] == -1
            assert scores[row, -1] == -np.inf and np.isfinite(scores[row, :-1]).all()
        else:
            assert sorted(indices[row]) == list(range(7))
    with pytest.raises(ValueError, match="2 entries for 7 queries"):
        exact_search(queries, documents, 2, exclude=[0, 1], engine=engine)


def test_no_more_than_block_scores_exist_at_once(monkeypatch):
    shapes = []
    top_k = dense._top_k

    def spy(scores, k):
        shapes.append(tuple(scores.shape))
        return top_k(scores, k)

    monkeypatch.setattr(dense, "_top_k", spy)
    queries, documents = (
        small_integer_embeddings(30, 3, seed=2),
        small_integer_embeddings(100, 3, 4),
    )
    scores, indices = exact_search(queries, documents, 5, block_scores=250, engine="torch")
    assert shapes and all(rows * columns <= 250 for rows, columns in shapes)
    assert sum(columns for rows, columns in shapes if rows == shapes[0][0]) == 100  # no sliver
    want_scores, want_index = reference_search(queries, documents, 5)
    np.testing.assert_array_equal(indices, want_index)


def test_faiss_is_the_default_engine_and_torch_backend_forces_torch(monkeypatch):
    calls = []
    for name in ("_faiss_search", "_torch_search"):
        real = getattr(dense, name)
        monkeypatch.setattr(dense, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    queries, documents = small_integer_embeddings(3, 3, seed=1), small_integer_embeddings(20, 3, 2)
    monkeypatch.delenv("TWOTOWER_BACKEND", raising=False)
    assert faiss_search_available()
    exact_search(queries, documents, 4)
    monkeypatch.setenv("TWOTOWER_BACKEND", "torch")
    assert not faiss_search_available()
    exact_search(queries, documents, 4)
    assert calls[0] == "_faiss_search" and calls[-1] == "_torch_search"
    with pytest.raises(Exception, match="faiss or torch"):
        exact_search(queries, documents, 4, engine="annoy")


def test_exact_run_keeps_k_documents_besides_the_query_itself():
    embeddings = np.eye(4, dtype=np.float32) + 0.1
    ids = ["a", "b", "c", "d"]
    run = exact_run(ids, embeddings, ids, embeddings, 2, ignore_identical_ids=True)
    assert all(len(ranked) == 2 and query not in ranked for query, ranked in run.items())
    plain = exact_run(ids[:1], embeddings[:1], ids, embeddings, 2)
    assert list(plain["a"]) == ["a", "b"]  # b, c, d tie: the first in corpus order
    assert plain["a"]["a"] == pytest.approx(1.0 + 0.2 + 4 * 0.01)


def test_l2_normalize_is_sentence_transformers_normalisation():
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    x[2] = 0.0
    unit = l2_normalize(x)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, torch.nn.functional.normalize(torch.from_numpy(x)), rtol=1e-6)
    assert (unit[2] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(unit[[0, 1, 3, 4]], axis=1), 1.0, rtol=1e-6)
    assert l2_normalize(x.astype(np.float64)).dtype == np.float64
    np.testing.assert_array_equal(
        l2_normalize(np.array([[3, 4]])), np.array([[0.6, 0.8]], np.float32)
    )
