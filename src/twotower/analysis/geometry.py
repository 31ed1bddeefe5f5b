"""Geometry of a two-tower embedding space (numpy, no plotting): alignment and uniformity of
the towers, anisotropy and the gap between the towers' centroids.

Conventions: ``q`` is an (Nq, D) query matrix, ``d`` an (Nd, D) document matrix; every measure
here L2-normalises its input first (``x̂ = x / ||x||``) and computes in float64.

References
    Wang & Isola 2020, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere" (ICML): alignment and uniformity.
    Ethayarajh 2019, "How Contextual are Contextualized Word Representations?" (EMNLP):
    anisotropy as the mean cosine between embeddings.
    DANCE (Li et al. 2021, "More Robust Dense Retrieval with Contrastive Dual Learning"): the
    anisotropy of the query space it motivates.
    docs/methods.md §13 gathers the formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from twotower.errors import InputError
from twotower.retrieval.dense import l2_normalize

BLOCK_ELEMENTS = 1 << 24  # scores materialised at once when scoring blockwise (64 MiB float32)


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
    step = max(1, BLOCK_ELEMENTS // max(1, qn.shape[1]))
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
        step = max(1, BLOCK_ELEMENTS // n)
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
    step = max(1, BLOCK_ELEMENTS // max(1, xn.shape[1]))
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
