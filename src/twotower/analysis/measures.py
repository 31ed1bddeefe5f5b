"""Measures of a two-tower embedding space (numpy, no plotting).

Conventions: ``q`` is an (Nq, D) query matrix, ``d`` an (Nd, D) document matrix. Functions whose
name says *cosine*, and alignment / uniformity, L2-normalise their input first
(``x̂ = x / ||x||``); the retrieval functions score with whatever matrices they are given (pass
normalised rows for a cosine model, raw rows for a dot-product model).

References
    Wang & Isola 2020, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere" (ICML): alignment and uniformity.
    Ethayarajh 2019, "How Contextual are Contextualized Word Representations?" (EMNLP):
    anisotropy as the mean cosine between embeddings.
    DANCE (Li et al. 2021, "More Robust Dense Retrieval with Contrastive Dual Learning"): the
    anisotropy of the query space it motivates; the softmax over hard negatives.
    SamToNe (Moiseev et al. 2023, ACL Findings): top-1 retrieved similarity of the two towers.
    docs/methods.md §13 gathers the formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from twotower.errors import InputError
from twotower.retrieval.dense import exact_search, l2_normalize

_BLOCK_ELEMENTS = 1 << 24  # scores materialised at once when scoring blockwise (64 MiB float32)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows L2-normalised in float64: the measures are computed in float64 (zero rows stay 0)."""
    return l2_normalize(np.asarray(x, dtype=np.float64))


# --------------------------------------------------------------------------------------------
# alignment and uniformity (Wang & Isola 2020)
# --------------------------------------------------------------------------------------------


def alignment(
    queries: np.ndarray,
    documents: np.ndarray,
    pairs: np.ndarray,
    *,
    alpha: float = 2.0,
    max_pairs: int | None = 1_000_000,
    seed: int = 0,
) -> float:
    """Alignment loss of positive pairs (Wang & Isola 2020, eq. 4).

        ℓ_align = E_{(q,d) ~ positives} || q̂ - d̂ ||^α ,   α = 2 by default

    on L2-normalised rows. 0 when every query coincides with its positives, 4 (α = 2) when they
    are antipodal; lower is better. ``pairs`` is an (P, 2) array of (query row, document row).
    With more than ``max_pairs`` pairs, ``max_pairs`` of them are drawn (seeded, with
    replacement).
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        raise InputError("alignment needs at least one positive (query, document) pair")
    if max_pairs is not None and len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = pairs[rng.integers(len(pairs), size=max_pairs)]
    qn = _unit(queries)
    dn = _unit(documents)
    total = 0.0
    step = max(1, _BLOCK_ELEMENTS // max(1, qn.shape[1]))
    for s in range(0, len(pairs), step):
        p = pairs[s : s + step]
        diff = qn[p[:, 0]] - dn[p[:, 1]]
        total += float(np.sum(np.linalg.norm(diff, axis=1) ** alpha))
    return total / len(pairs)


def uniformity(
    x: np.ndarray, *, t: float = 2.0, max_pairs: int = 1_000_000, seed: int = 0
) -> float:
    """Uniformity loss of one set of embeddings (Wang & Isola 2020, eq. 5).

        ℓ_uniform = log E_{i<j} exp( -t || x̂_i - x̂_j ||² ) ,   t = 2 by default

    on L2-normalised rows. 0 when all points coincide (log 1); the more evenly the points cover
    the sphere the more negative; lower is better. For unit vectors ||x̂_i - x̂_j||² = 2 - 2 cos,
    so n points of a regular simplex (all cosines -1/(n-1)) give -t · 2n/(n-1).
    Exact over all n(n-1)/2 pairs when that is at most ``max_pairs``; otherwise ``max_pairs``
    pairs i ≠ j drawn uniformly (seeded). Computed with a log-sum-exp, so tiny values do not
    underflow.
    """
    xn = _unit(x)
    n = xn.shape[0]
    if n < 2:
        raise InputError("uniformity needs at least two embeddings")
    n_pairs = n * (n - 1) // 2
    if n_pairs <= max_pairs:
        logs = []
        step = max(1, _BLOCK_ELEMENTS // n)
        for s in range(0, n - 1, step):
            block = xn[s : s + step]
            cos = block @ xn.T  # (b, n)
            rows = np.arange(s, s + block.shape[0])[:, None]
            upper = np.arange(n)[None, :] > rows  # pairs i < j only
            sq = np.clip(2.0 - 2.0 * cos[upper], 0.0, 4.0)
            if sq.size:
                logs.append(_logsumexp(-t * sq))
        return float(_logsumexp(np.array(logs)) - math.log(n_pairs))
    rng = np.random.default_rng(seed)
    i = rng.integers(n, size=max_pairs)
    j = rng.integers(n - 1, size=max_pairs)
    j = j + (j >= i)  # uniform over j != i
    # Blockwise: gathering all sampled rows at once would hold two (max_pairs, D) float64 copies.
    sq = np.empty(max_pairs, dtype=np.float64)
    step = max(1, _BLOCK_ELEMENTS // max(1, xn.shape[1]))
    for s in range(0, max_pairs, step):
        cos = np.einsum("ij,ij->i", xn[i[s : s + step]], xn[j[s : s + step]])
        sq[s : s + step] = np.clip(2.0 - 2.0 * cos, 0.0, 4.0)
    return float(_logsumexp(-t * sq) - math.log(max_pairs))


def _logsumexp(v: np.ndarray) -> float:
    v = np.asarray(v, dtype=np.float64)
    m = float(np.max(v))
    return m + math.log(float(np.sum(np.exp(v - m))))


def positive_pairs(positives: Sequence[np.ndarray]) -> np.ndarray:
    """(P, 2) array of (anchor row, positive row) from per-anchor positive row indices."""
    rows = [
        np.stack([np.full(len(p), i, dtype=np.int64), p], axis=1) for i, p in enumerate(positives)
    ]
    rows = [r for r in rows if len(r)]
    return np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.int64)


# --------------------------------------------------------------------------------------------
# anisotropy and centroids
# --------------------------------------------------------------------------------------------


def mean_pairwise_cosine(x: np.ndarray) -> float:
    """Anisotropy of one tower: mean cosine over all ordered pairs i ≠ j.

        A = 1/(n(n-1)) Σ_{i≠j} cos(x_i, x_j) = ( ||Σ_i x̂_i||² - n ) / ( n(n-1) )

    (exact, O(nD)). 1 when all vectors point the same way (fully anisotropic), -1/(n-1) for a
    regular simplex, ≈ 0 for isotropic directions in high dimension.
    """
    xn = _unit(x)
    n = xn.shape[0]
    if n < 2:
        raise InputError("mean pairwise cosine needs at least two embeddings")
    s = xn.sum(axis=0)
    return float((s @ s - np.sum(xn * xn)) / (n * (n - 1)))


@dataclass
class CentroidGap:
    """Where the two towers' clouds sit relative to each other (on normalised rows).

    distance = || μ_q - μ_d ||  with μ = mean of x̂ over the tower; 0 for identical towers.
    cosine = cos(μ_q, μ_d) (NaN when a centroid is (numerically) the zero vector, norm < 1e-6).
    query_norm / document_norm = ||μ||, which is also sqrt(1/n + (n-1)/n · A) for anisotropy A.
    """

    distance: float
    cosine: float
    query_norm: float
    document_norm: float


def centroid_gap(queries: np.ndarray, documents: np.ndarray) -> CentroidGap:
    """Distance and cosine between the query centroid and the document centroid."""
    mq = _unit(queries).mean(axis=0)
    md = _unit(documents).mean(axis=0)
    nq, nd = float(np.linalg.norm(mq)), float(np.linalg.norm(md))
    # float32 inputs leave ~1e-8 of noise in a centroid that is zero in exact arithmetic
    cos = float(mq @ md / (nq * nd)) if nq > 1e-6 and nd > 1e-6 else float("nan")
    return CentroidGap(
        distance=float(np.linalg.norm(mq - md)), cosine=cos, query_norm=nq, document_norm=nd
    )


@dataclass
class Anisotropy:
    """Mean pairwise cosine within each tower, and the centroid gap between the towers."""

    query_mean_cosine: float
    document_mean_cosine: float
    centroid: CentroidGap

    def to_dict(self) -> dict:
        return asdict(self)


def anisotropy(queries: np.ndarray, documents: np.ndarray) -> Anisotropy:
    return Anisotropy(
        query_mean_cosine=mean_pairwise_cosine(queries),
        document_mean_cosine=mean_pairwise_cosine(documents),
        centroid=centroid_gap(queries, documents),
    )


# --------------------------------------------------------------------------------------------
# retrieval: top-k with positives and self-matches handled
# --------------------------------------------------------------------------------------------


@dataclass
class Retrieved:
    """Exact top-k of each anchor: scores (n, k) descending and candidate rows (n, k).

    Slots past the number of candidates hold -inf / -1. ``is_positive`` (n, k) marks relevant
    candidates.
    """

    scores: np.ndarray
    indices: np.ndarray
    is_positive: np.ndarray


def retrieve_topk(
    anchors: np.ndarray,
    candidates: np.ndarray,
    k: int,
    *,
    positives: Sequence[np.ndarray] | None = None,
    exclude: Sequence[int] | None = None,
) -> Retrieved:
    """:func:`~twotower.retrieval.dense.exact_search` with the relevant candidates flagged.

    ``anchors`` (n, D) and ``candidates`` (m, D) are scored as given (normalise them first for
    cosine). ``exclude[i]`` is a candidate row never returned for anchor i (-1 for none): the
    anchor itself where queries are also documents (ArguAna). ``positives[i]`` are the rows
    relevant to anchor i. The result has ``k`` slots per anchor even when there are fewer
    candidates (see :class:`Retrieved`).
    """
    # the same memory bound as every other blockwise measure here
    found_scores, found_rows = exact_search(
        anchors, candidates, k, exclude=exclude, block_scores=_BLOCK_ELEMENTS
    )
    n, width = found_scores.shape
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    indices = np.full((n, k), -1, dtype=np.int64)
    scores[:, :width] = found_scores
    indices[:, :width] = found_rows
    is_pos = np.zeros((n, k), dtype=bool)
    if positives is not None:
        for i, pos in enumerate(positives):
            if len(pos):
                is_pos[i] = np.isin(indices[i], pos) & (indices[i] >= 0)
    return Retrieved(scores=scores, indices=indices, is_positive=is_pos)


# --------------------------------------------------------------------------------------------
# top-1 retrieved similarity (SamToNe's probe)
# --------------------------------------------------------------------------------------------


@dataclass
class Summary:
    """Distribution summary of a 1-D array (NaN everywhere when empty)."""

    count: int
    mean: float
    std: float
    min: float
    q05: float
    q25: float
    median: float
    q75: float
    q95: float
    max: float


def summarize(values: np.ndarray) -> Summary:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
    return Summary(
        count=int(v.size),
        mean=float(v.mean()),
        std=float(v.std()),
        min=float(v.min()),
        q05=float(q[0]),
        q25=float(q[1]),
        median=float(q[2]),
        q75=float(q[3]),
        q95=float(q[4]),
        max=float(v.max()),
    )


@dataclass
class Top1Similarity:
    """Similarity of each judged query to its top-1 retrieved document.

    scores[i], is_relevant[i], doc_rows[i] belong to query row query_rows[i] (judged queries
    only: those with at least one relevant document in the collection). ``hit_rate`` is the
    fraction whose top-1 is relevant (success@1); ``auc`` is the probability that a query with a
    relevant top-1 has a higher top-1 score than one without (Mann-Whitney, ties count 1/2;
    NaN if a group is empty): how well the top-1 score alone tells a hit from a miss.
    """

    query_rows: np.ndarray
    doc_rows: np.ndarray
    scores: np.ndarray
    is_relevant: np.ndarray
    hit_rate: float
    auc: float
    relevant: Summary
    non_relevant: Summary
    all: Summary


def top1_similarity(retrieved: Retrieved, query_rows: np.ndarray | None = None) -> Top1Similarity:
    """Split the top-1 scores of ``retrieved`` (from :func:`retrieve_topk`, k ≥ 1) by relevance."""
    scores = retrieved.scores[:, 0].astype(np.float64)
    rel = retrieved.is_positive[:, 0].copy()
    rows = np.arange(len(scores)) if query_rows is None else np.asarray(query_rows)
    ok = np.isfinite(scores)
    scores, rel, rows = scores[ok], rel[ok], rows[ok]
    docs = retrieved.indices[ok, 0]
    return Top1Similarity(
        query_rows=rows,
        doc_rows=docs,
        scores=scores,
        is_relevant=rel,
        hit_rate=float(rel.mean()) if rel.size else float("nan"),
        auc=_auc(scores[rel], scores[~rel]),
        relevant=summarize(scores[rel]),
        non_relevant=summarize(scores[~rel]),
        all=summarize(scores),
    )


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv), dtype=np.float64)
    sorted_v = allv[order]
    # average ranks for ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    r_pos = ranks[: pos.size].sum()
    return float((r_pos - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


# --------------------------------------------------------------------------------------------
# softmax over the top negatives (DANCE's view)
# --------------------------------------------------------------------------------------------


def softmax_entropy(scores: np.ndarray, temperature: float) -> tuple[float, float]:
    """Normalised entropy and max probability of softmax(scores / τ) over one set of negatives.

        p_j = exp(s_j/τ) / Σ_k exp(s_k/τ),   H_norm = -Σ_j p_j log p_j / log K

    H_norm = 1 when all K scores are equal (uniform: the loss spreads its gradient over all
    negatives), → 0 when one negative dominates. K < 2 gives NaN.
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size < 2:
        return float("nan"), float("nan")
    z = s / temperature
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    nz = p[p > 0]
    h = float(-(nz * np.log(nz)).sum() / math.log(s.size))
    return min(max(h, 0.0), 1.0), float(p.max())


@dataclass
class NegativeSoftmax:
    """Per anchor, the softmax over its top-k retrieved non-relevant candidates.

    anchor_rows[i] has ``entropy[i]`` (normalised, 1 = uniform) and ``max_prob[i]`` over
    ``n_negatives[i]`` negatives (k unless the collection is too small). Summaries across
    anchors.
    """

    direction: str
    k: int
    temperature: float
    anchor_rows: np.ndarray
    entropy: np.ndarray
    max_prob: np.ndarray
    n_negatives: np.ndarray
    entropy_summary: Summary
    max_prob_summary: Summary


def negative_softmax(
    anchors: np.ndarray,
    candidates: np.ndarray,
    positives: Sequence[np.ndarray],
    *,
    k: int = 20,
    temperature: float = 0.05,
    exclude: Sequence[int] | None = None,
    anchor_rows: np.ndarray | None = None,
    direction: str = "query->document",
) -> NegativeSoftmax:
    """DANCE's view: how peaked the model's softmax is over each anchor's hardest negatives.

    For anchor a: retrieve the top (k + |positives(a)|) candidates exactly, drop the relevant
    ones (and the excluded self-match), keep the first k: the top-k negatives s_1..s_k. Then
    :func:`softmax_entropy` at temperature τ (the training temperature; 0.05 = scale 20).
    Low entropy means a few negatives carry the whole contrastive gradient.
    Used query→document (anchors = queries) and, for the dual task, document→query.
    """
    if k < 1:
        raise InputError(f"k must be ≥ 1, got {k}")
    max_pos = max((len(p) for p in positives), default=0)
    ret = retrieve_topk(anchors, candidates, k + max_pos, positives=positives, exclude=exclude)
    return negatives_from_retrieved(
        ret, k=k, temperature=temperature, anchor_rows=anchor_rows, direction=direction
    )


def negatives_from_retrieved(
    retrieved: Retrieved,
    *,
    k: int = 20,
    temperature: float = 0.05,
    anchor_rows: np.ndarray | None = None,
    direction: str = "query->document",
) -> NegativeSoftmax:
    """:func:`negative_softmax` on a retrieval already done with depth ≥ k + max |positives|."""
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    ret = retrieved
    n = ret.scores.shape[0]
    ent = np.full(n, np.nan)
    mx = np.full(n, np.nan)
    cnt = np.zeros(n, dtype=np.int64)
    for i in range(n):
        keep = (~ret.is_positive[i]) & (ret.indices[i] >= 0)
        neg = ret.scores[i][keep][:k]
        cnt[i] = neg.size
        ent[i], mx[i] = softmax_entropy(neg, temperature)
    rows = np.arange(n) if anchor_rows is None else np.asarray(anchor_rows)
    return NegativeSoftmax(
        direction=direction,
        k=k,
        temperature=float(temperature),
        anchor_rows=rows,
        entropy=ent,
        max_prob=mx,
        n_negatives=cnt,
        entropy_summary=summarize(ent),
        max_prob_summary=summarize(mx),
    )
