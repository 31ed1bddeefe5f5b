"""Paired significance tests over queries: is system A's per-query metric different from B's?

Two tests on the same per-query differences, as IR evaluation practice recommends (Smucker,
Allan and Carterette 2007, "A comparison of statistical significance tests for information
retrieval evaluation"): the paired t-test and the paired randomisation (sign-flip permutation)
test, both two-sided, from scipy. A query judged for one system but missing for the other
counts as 0 for the missing one, as trec_eval scores an unretrieved query. The randomisation
test enumerates all 2^n sign flips when ``permutations`` reaches 2^n (13 queries or fewer at the
default), so its p-value is exact there and a Monte Carlo estimate otherwise.

:func:`holm` corrects the p-values of several systems compared with one baseline for multiple
comparisons (Holm 1979, "A simple sequentially rejective multiple test procedure"): it controls
the family-wise error rate without assuming the tests independent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

PERMUTATIONS = 10_000  # resamples of the randomisation test (p-values resolved to 1e-4)


@dataclass(frozen=True)
class PairedTest:
    queries: int
    mean_a: float
    mean_b: float
    difference: float  # mean of a - b
    wins: int  # queries where a > b
    losses: int
    t_p_value: float
    randomisation_p_value: float
    t_statistic: float = 0.0  # mean difference over its standard error; ±inf if all differ alike

    def to_json(self) -> dict:
        return asdict(self)


def paired_test(
    a: Mapping[str, float],
    b: Mapping[str, float],
    *,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
) -> PairedTest:
    """Compare per-query values ``a`` and ``b`` (query id → value) over the union of their queries."""
    queries = sorted(set(a) | set(b))
    if not queries:
        raise ValueError("no queries to compare")
    x = np.array([a.get(q, 0.0) for q in queries], dtype=float)
    y = np.array([b.get(q, 0.0) for q in queries], dtype=float)
    diff = x - y
    t_value = 0.0
    if np.allclose(diff, 0.0):
        t_p = random_p = 1.0
    else:
        with np.errstate(divide="ignore", invalid="ignore"):  # one query, or no spread: inf/nan
            t_test = stats.ttest_rel(x, y)
        t_value, t_p = float(t_test.statistic), float(t_test.pvalue)
        random_p = float(
            stats.permutation_test(
                (x, y),
                lambda u, v: np.mean(u - v),
                permutation_type="samples",
                n_resamples=permutations,
                alternative="two-sided",
                random_state=seed,
            ).pvalue
        )
    return PairedTest(
        queries=len(queries),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        difference=float(diff.mean()),
        wins=int((diff > 0).sum()),
        losses=int((diff < 0).sum()),
        t_p_value=t_p,
        randomisation_p_value=random_p,
        t_statistic=t_value,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given: the i-th smallest p times (m − i + 1), made
    non-decreasing along that order and capped at 1 (reject where the adjusted p < α).

    A NaN (a test that could not be made) stays NaN and counts as 1 in the family, so it
    rejects nothing and still takes its share of α."""
    values = [1.0 if math.isnan(p) else float(p) for p in p_values]
    order = sorted(range(len(values)), key=lambda i: values[i])
    adjusted = [1.0] * len(values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(values) - rank) * values[index]))
        adjusted[index] = running
    return [math.nan if math.isnan(p) else a for p, a in zip(p_values, adjusted, strict=True)]
