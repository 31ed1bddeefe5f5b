"""Per-collection normalisation of teacher scores and the weak-query rule (docs/methods.md §6).

Listwise distillation (Tamber et al. 2025) normalises teacher scores over the whole
collection: min-max between the 1st and 99th percentile of all scores, clipped to [0, 1];
and drops the queries whose best score falls below the 25th percentile. We read the latter as
the 25th percentile of the per-query best scores (so about a quarter of the queries, those the
teacher finds no good candidate for, are dropped); ``of="all"`` takes the percentile over all
scores instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from twotower.errors import ConfigError

TeacherScores = dict[str, dict[str, float]]


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


def keep_queries(
    scores: Mapping[str, Mapping[str, float]],
    percentile: float = 25.0,
    of: Literal["best", "all"] = "best",
) -> list[str]:
    """Query ids whose best score is not below the ``percentile``-th percentile, in input order.

    ``of="best"``: the percentile of the per-query best scores; ``of="all"``: of all scores.
    Queries without scores are dropped.
    """
    best = {qid: max(per_query.values()) for qid, per_query in scores.items() if per_query}
    if not best:
        return []
    if of == "best":
        pool = list(best.values())
    elif of == "all":
        pool = [s for per_query in scores.values() for s in per_query.values()]
    else:
        raise ConfigError(f"of must be 'best' or 'all', got {of!r}")
    threshold = float(np.percentile(np.asarray(pool, dtype=np.float64), percentile))
    return [qid for qid, value in best.items() if value >= threshold]
