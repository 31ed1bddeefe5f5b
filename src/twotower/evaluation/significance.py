"""Paired significance tests over queries: is system A's per-query metric different from B's?

Two tests on the same per-query differences, as IR evaluation practice recommends (Smucker,
Allan and Carterette 2007, "A comparison of statistical significance tests for information
retrieval evaluation"): the paired t-test and the paired randomisation (sign-flip permutation)
test, both two-sided, from scipy. A query judged for one system but missing for the other
counts as 0 for the missing one, as trec_eval scores an unretrieved query.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    if np.allclose(diff, 0.0):
        t_p = random_p = 1.0
    else:
        t_p = float(stats.ttest_rel(x, y).pvalue)
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
    )
