"""Measures on constructed embeddings with answers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twotower.analysis import (
    TowerEmbeddings,
    alignment,
    centroid_gap,
    geometry,
    mean_pairwise_cosine,
    negative_softmax,
    neighbours,
    retrieve_topk,
    softmax_entropy,
    top1_similarity,
    uniformity,
)
from twotower.errors import InputError


def simplex(n: int) -> np.ndarray:
    """n unit vectors in R^n with all pairwise cosines -1/(n-1) (centred standard basis)."""
    x = np.eye(n) - 1.0 / n
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def plus_minus_basis(d: int) -> np.ndarray:
    return np.concatenate([np.eye(d), -np.eye(d)])


# ---------------------------------------------------------------- uniformity


def test_uniformity_all_equal_is_zero():
    x = np.tile([[0.3, -1.2, 2.0]], (10, 1))
    assert uniformity(x) == pytest.approx(0.0, abs=1e-9)


def test_uniformity_plus_minus_basis_by_hand():
    # 6 points ±e_i in R^3: each point has 1 antipode (||x-y||² = 4) and 4 orthogonal
    # neighbours (||x-y||² = 2), so over all pairs: log(1/5 e^{-8} + 4/5 e^{-4}).
    expected = math.log(math.exp(-8) / 5 + 4 * math.exp(-4) / 5)
    assert uniformity(plus_minus_basis(3), t=2.0) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [3, 4, 7])
def test_uniformity_regular_simplex(n):
    # ||x-y||² = 2 - 2cos = 2 + 2/(n-1) = 2n/(n-1) for every pair.
    assert uniformity(simplex(n), t=2.0) == pytest.approx(-2.0 * 2 * n / (n - 1), rel=1e-9)
    assert uniformity(simplex(n), t=1.0) == pytest.approx(-2 * n / (n - 1), rel=1e-9)


def test_uniformity_spread_beats_collapsed_and_ignores_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    assert uniformity(x) < uniformity(x + 10.0)  # shifted cloud = narrower cone
    assert uniformity(x) == pytest.approx(uniformity(7.5 * x), rel=1e-6)  # normalised


def test_uniformity_sampling_is_seeded_and_close_to_exact():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    exact = uniformity(x, max_pairs=10**9)
    a = uniformity(x, max_pairs=20_000, seed=3)
    b = uniformity(x, max_pairs=20_000, seed=3)
    c = uniformity(x, max_pairs=20_000, seed=4)
    assert a == b
    assert a != c
    assert a == pytest.approx(exact, abs=0.03)
    # every pair of a simplex is the same distance: sampled == exact
    assert uniformity(simplex(40), max_pairs=50) == pytest.approx(-2 * 2 * 40 / 39, rel=1e-9)


def test_uniformity_blockwise_matches_single_block(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(37, 5))
    whole = uniformity(x)
    monkeypatch.setattr(geometry, "BLOCK_ELEMENTS", 40)  # one row per block
    assert uniformity(x) == pytest.approx(whole, rel=1e-12)


# ---------------------------------------------------------------- alignment


def test_alignment_identical_antipodal_orthogonal():
    q = np.eye(3)
    pairs = np.array([[0, 0], [1, 1], [2, 2]])
    assert alignment(q, q, pairs) == pytest.approx(0.0)
    assert alignment(q, -q, pairs) == pytest.approx(4.0)
    assert alignment(q, -q, pairs, alpha=1.0) == pytest.approx(2.0)
    assert alignment(q, np.roll(q, 1, axis=1), pairs) == pytest.approx(2.0)
    # un-normalised input is normalised first
    assert alignment(5 * q, -0.1 * q, pairs) == pytest.approx(4.0)


def test_alignment_uses_only_the_given_pairs():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    d = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    # (q0, d0): 0; (q0, d1): 4; (q1, d2): 0  -> mean 4/3
    assert alignment(q, d, np.array([[0, 0], [0, 1], [1, 2]])) == pytest.approx(4 / 3)
    with pytest.raises(InputError):
        alignment(q, d, np.zeros((0, 2), dtype=int))


# ---------------------------------------------------------------- anisotropy, centroids


def test_mean_pairwise_cosine_known_values():
    assert mean_pairwise_cosine(np.tile([[1.0, 2.0, 3.0]], (5, 1))) == pytest.approx(1.0)
    for n in (2, 3, 5, 10):
        assert mean_pairwise_cosine(simplex(n)) == pytest.approx(-1 / (n - 1), abs=1e-12)
    assert mean_pairwise_cosine(plus_minus_basis(4)) == pytest.approx(-1 / 7, abs=1e-12)


def test_mean_pairwise_cosine_matches_brute_force():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(25, 4)) + 0.5
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = xn @ xn.T
    brute = (c.sum() - np.trace(c)) / (25 * 24)
    assert mean_pairwise_cosine(x) == pytest.approx(brute, rel=1e-9)


def test_centroid_gap():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 6)) + 1.0
    same = centroid_gap(x, x.copy())
    assert same.distance == pytest.approx(0.0, abs=1e-12)
    assert same.cosine == pytest.approx(1.0)
    # two antipodal point masses
    opp = centroid_gap(np.tile([[0.0, 3.0]], (4, 1)), np.tile([[0.0, -1.0]], (7, 1)))
    assert opp.distance == pytest.approx(2.0)
    assert opp.cosine == pytest.approx(-1.0)
    assert opp.query_norm == pytest.approx(1.0)
    # a centred tower has no direction: cosine undefined
    assert math.isnan(centroid_gap(simplex(4), np.eye(4)).cosine)


# ---------------------------------------------------------------- retrieval, top-1


def test_retrieve_topk_matches_brute_force_and_excludes(monkeypatch):
    rng = np.random.default_rng(5)
    a, c = rng.normal(size=(9, 4)), rng.normal(size=(13, 4))
    monkeypatch.setattr(neighbours, "BLOCK_ELEMENTS", 26)  # 2 anchors per block
    r = retrieve_topk(a, c, 4, exclude=[0] + [-1] * 8)
    s = a @ c.T
    s[0, 0] = -np.inf
    order = np.argsort(-s, axis=1)[:, :4]
    np.testing.assert_array_equal(r.indices, order)
    np.testing.assert_allclose(r.scores, np.take_along_axis(s, order, 1), rtol=1e-5)
    # k larger than the collection: padded with -inf / -1
    r = retrieve_topk(a[:1], c[:2], 5)
    assert list(r.indices[0, 2:]) == [-1, -1, -1]
    assert np.all(np.isneginf(r.scores[0, 2:]))


def test_top1_split_on_hand_made_example():
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = np.array(
        [
            [1.0, 0.1],  # top-1 d0 (relevant)
            [0.2, 1.0],  # top-1 d1 (not relevant: its positive is d2)
            [-1.0, 0.5],  # top-1 d2 (relevant)
            [0.6, 0.8],  # top-1 d1 (relevant; d0 also relevant)
        ]
    )
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    positives = [np.array([0]), np.array([2]), np.array([2]), np.array([0, 1])]
    t = top1_similarity(retrieve_topk(qn, docs, 1, positives=positives))
    np.testing.assert_array_equal(t.doc_rows, [0, 1, 2, 1])
    np.testing.assert_array_equal(t.is_relevant, [True, False, True, True])
    np.testing.assert_allclose(t.scores, [qn[0, 0], qn[1, 1], -qn[2, 0], qn[3, 1]], rtol=1e-6)
    assert t.hit_rate == pytest.approx(0.75)
    assert t.relevant.count == 3 and t.non_relevant.count == 1
    assert t.non_relevant.mean == pytest.approx(qn[1, 1], rel=1e-6)
    assert t.relevant.median == pytest.approx(np.median(t.scores[t.is_relevant]))
    # the miss (0.98) scores above two of the three hits (0.995, 0.894, 0.8): AUC = 1/3
    assert t.auc == pytest.approx(1 / 3)


# ---------------------------------------------------------------- softmax over negatives


def test_softmax_entropy_uniform_and_dominant():
    h, p = softmax_entropy(np.full(20, 0.42), temperature=0.05)
    assert h == pytest.approx(1.0)
    assert p == pytest.approx(1 / 20)
    h, p = softmax_entropy(np.array([0.9] + [0.1] * 19), temperature=0.01)
    assert h < 1e-6
    assert p == pytest.approx(1.0)
    scores = np.linspace(0.3, 0.7, 10)
    cold, _ = softmax_entropy(scores, temperature=0.02)
    warm, _ = softmax_entropy(scores, temperature=1.0)
    assert 0 < cold < warm < 1
    assert all(math.isnan(v) for v in softmax_entropy(np.array([0.5]), 0.05))


def test_negative_softmax_skips_positives_and_self():
    # one anchor; candidates scored 0.9 (positive), 0.8 (self, excluded), then three at 0.5
    anchors = np.array([[1.0, 0.0]])
    cands = np.array([[0.9, 0.0], [0.8, 0.0], [0.5, 0.0], [0.5, 0.0], [0.5, 0.0], [0.1, 0.0]])
    ns = negative_softmax(anchors, cands, [np.array([0])], k=3, temperature=0.05, exclude=[1])
    assert ns.n_negatives[0] == 3
    assert ns.entropy[0] == pytest.approx(1.0)  # the three 0.5s
    assert ns.max_prob[0] == pytest.approx(1 / 3)
    ns = negative_softmax(anchors, cands, [np.array([0])], k=4, temperature=0.05)
    assert ns.n_negatives[0] == 4  # self not excluded now: 0.8 dominates
    assert ns.max_prob[0] > 0.99
    assert ns.entropy_summary.count == 1


# ---------------------------------------------------------------- input checks


def test_tower_embeddings_validation():
    q, d = np.ones((2, 3)), np.ones((4, 3))
    ok = TowerEmbeddings("m", ["a", "b"], q, ["1", "2", "3", "4"], d)
    assert ok.queries.dtype == np.float32 and ok.dim == 3
    assert not ok.norm_stats()["input_normalized"]
    with pytest.raises(InputError, match="dimension"):
        TowerEmbeddings("m", ["a", "b"], q, ["1", "2", "3", "4"], np.ones((4, 5)))
    with pytest.raises(InputError, match="duplicate"):
        TowerEmbeddings("m", ["a", "a"], q, ["1", "2", "3", "4"], d)
    with pytest.raises(InputError, match="rows"):
        TowerEmbeddings("m", ["a"], q, ["1", "2", "3", "4"], d)
    with pytest.raises(InputError, match="NaN"):
        TowerEmbeddings("m", ["a", "b"], np.full((2, 3), np.nan), ["1", "2", "3", "4"], d)
    with pytest.raises(InputError, match="similarity"):
        TowerEmbeddings("m", ["a", "b"], q, ["1", "2", "3", "4"], d, similarity="l2")


def test_sampled_uniformity_is_the_same_computed_blockwise(monkeypatch):
    # The sampled path gathers pair rows in blocks (memory); the blocks must not change the value.
    x = np.random.default_rng(2).normal(size=(500, 8))
    whole = uniformity(x, max_pairs=5_000, seed=7)
    monkeypatch.setattr(geometry, "BLOCK_ELEMENTS", 8 * 333)  # 333 pairs per block, ragged last
    assert uniformity(x, max_pairs=5_000, seed=7) == pytest.approx(whole, rel=1e-12)
