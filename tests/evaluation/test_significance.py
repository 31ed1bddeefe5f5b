import numpy as np
import pytest
from scipy import stats

from twotower.evaluation.significance import paired_test


def test_a_consistent_gain_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    base = {str(i): float(v) for i, v in enumerate(rng.uniform(0, 1, 200))}
    better = {q: min(1.0, v + 0.1) for q, v in base.items()}
    noisy = {q: v + float(rng.normal(0, 0.05)) for q, v in base.items()}
    gain = paired_test(better, base)
    assert gain.difference > 0.05 and gain.t_p_value < 1e-6 and gain.randomisation_p_value < 1e-3
    assert gain.wins > gain.losses == 0
    same = paired_test(noisy, base)
    assert same.t_p_value > 0.01 and same.randomisation_p_value > 0.01


def test_the_t_test_is_scipys_and_a_missing_query_counts_zero():
    a = {"1": 0.5, "2": 0.9, "3": 0.2}
    b = {"1": 0.4, "2": 0.7}
    result = paired_test(a, b)
    expected = stats.ttest_rel([0.5, 0.9, 0.2], [0.4, 0.7, 0.0]).pvalue
    assert result.queries == 3 and result.t_p_value == pytest.approx(expected)
    assert result.difference == pytest.approx((0.1 + 0.2 + 0.2) / 3)


def test_identical_systems_have_p_one():
    a = {"1": 0.3, "2": 0.6}
    assert paired_test(a, dict(a)).randomisation_p_value == 1.0
