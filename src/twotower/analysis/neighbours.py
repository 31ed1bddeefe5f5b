"""What each anchor retrieves in a two-tower embedding space (numpy, no plotting): the top k
with positives and self-matches flagged, the top-1 similarity of hits and misses, and the
softmax over the hardest negatives.

The functions score with whatever matrices they are given: pass normalised rows for a cosine
model, raw rows for a dot-product model.

References
    SamToNe (Moiseev et al. 2023, ACL Findings): top-1 retrieved similarity of the two towers.
    DANCE (Li et al. 2021, "More Robust Dense Retrieval with Contrastive Dual Learning"): the
    softmax over hard negatives.
    docs/methods.md §13 gathers the formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twotower.errors import InputError
from twotower.retrieval.dense import exact_search

from .geometry import BLOCK_ELEMENTS

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
        anchors, candidates, k, exclude=exclude, block_scores=BLOCK_ELEMENTS
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
