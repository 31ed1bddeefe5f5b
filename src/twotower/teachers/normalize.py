"""Per-collection normalisation of teacher scores and the weak-query rule (docs/methods.md §6).

Listwise distillation (Tamber et al. 2025) normalises teacher scores over the whole
collection: min-max between the 1st and 99th percentile of all scores, clipped to [0, 1];
and drops the queries whose best score falls below the 25th percentile of all the candidates'
scores (of every query of the same type, in the authors' released code). A query's best score
is its top candidate's, so few queries fall below a quarter of all scores. ``of="best"`` takes
the percentile of the per-query best scores instead, which drops about a quarter of the
queries by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import numpy as np

from twotower.errors import ConfigError, check_percentile

TeacherScores = dict[str, dict[str, float]]
PercentileOf = Literal["all", "best"]
ALL_TYPES = "all"  # the group of every query when no types are given


def percentile_bounds(values, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """The ``low``-th and ``high``-th percentiles of ``values`` (numpy's linear interpolation)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("no scores to normalise")
    if not 0.0 <= low < high <= 100.0:
        raise ConfigError(f"need 0 <= low < high <= 100, got {low} and {high}")
    lo, hi = np.percentile(values, [low, high])
    return float(lo), float(hi)


def normalize_percentile(values, bounds: tuple[float, float]) -> np.ndarray:
    """``clip((values - lo) / (hi - lo), 0, 1)``; with ``hi == lo``, 1 at or above ``hi``, else 0."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = bounds
    if hi <= lo:
        return (values >= hi).astype(np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def normalize_scores(
    scores: Mapping[str, Mapping[str, float]], low: float = 1.0, high: float = 99.0
) -> tuple[TeacherScores, tuple[float, float]]:
    """Normalise every score of a collection with the collection's percentile bounds."""
    flat = [s for per_query in scores.values() for s in per_query.values()]
    bounds = percentile_bounds(flat, low, high)
    out: TeacherScores = {}
    for qid, per_query in scores.items():
        docs = list(per_query)
        values = normalize_percentile([per_query[d] for d in docs], bounds)
        out[qid] = dict(zip(docs, values.tolist(), strict=True))
    return out, bounds


def weak_query_thresholds(
    scores: Mapping[str, Mapping[str, float]],
    percentile: float = 25.0,
    of: PercentileOf = "all",
    types: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """The weak-query cut of each query type (``types``: query id → type; a query it lacks is
    ``untyped``), or of all queries together (key ``"all"``) without ``types``.

    ``of="all"``: the ``percentile``-th percentile of every score of the type's queries;
    ``of="best"``: of their best scores. Queries without scores count for nothing.
    """
    check_percentile("percentile", percentile)
    if of not in get_args(PercentileOf):
        raise ConfigError(f"of must be 'all' or 'best', got {of!r}")
    pools: dict[str, list[float]] = {}
    for qid, per_query in scores.items():
        if not per_query:
            continue
        pool = pools.setdefault(_group(qid, types), [])
        pool.extend(per_query.values() if of == "all" else [max(per_query.values())])
    return {
        group: float(np.percentile(np.asarray(pool, dtype=np.float64), percentile))
        for group, pool in pools.items()
    }


def keep_queries(
    scores: Mapping[str, Mapping[str, float]],
    percentile: float = 25.0,
    of: PercentileOf = "all",
    types: Mapping[str, str] | None = None,
) -> list[str]:
    """Query ids whose best score is not below their type's cut (:func:`weak_query_thresholds`),
    in input order. Queries without scores are dropped."""
    thresholds = weak_query_thresholds(scores, percentile, of, types)
    return [
        qid
        for qid, per_query in scores.items()
        if per_query and max(per_query.values()) >= thresholds[_group(qid, types)]
    ]


def _group(qid: str, types: Mapping[str, str] | None) -> str:
    return ALL_TYPES if types is None else types.get(qid, "untyped")
