"""The base → trained table: a paired test over queries on every row, a significant loss flagged."""

from __future__ import annotations

from scipy import stats

from twotower.evaluation.evaluate import EvalResult
from twotower.training.report import comparison_rows, markdown_comparison


def _result(system: str, values: list[float]) -> EvalResult:
    per_query = {f"q{i}": {"ndcg@10": v} for i, v in enumerate(values)}
    mean = sum(values) / len(values)
    return EvalResult(system, "data/toy", "test", {"ndcg@10": mean}, len(values), per_query)


def test_rows_carry_the_paired_test_of_trained_against_base():
    base = [0.9, 0.8, 0.7, 0.9, 0.6, 0.8, 0.9, 0.7]
    trained = [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.2, 0.1]  # loses on every query
    rows = comparison_rows([_result("base", base), _result("trained", trained)], "base", "trained")
    (row,) = rows
    assert row["wins"] == 0 and row["losses"] == 8
    assert row["t_p_value"] == stats.ttest_rel(trained, base).pvalue
    # 8 sign flips: 2 of the 256 assignments are as extreme, whatever the resampling finds.
    assert abs(row["p_value"] - 2 / 256) < 0.01
    table = markdown_comparison(rows)
    assert "(significant loss)**" in table and "0/8" in table


def test_a_noisy_change_is_not_flagged():
    base = [0.5, 0.6, 0.4, 0.5]
    trained = [0.6, 0.5, 0.5, 0.4]
    rows = comparison_rows([_result("base", base), _result("trained", trained)], "base", "trained")
    assert rows[0]["p_value"] > 0.05
    assert "significant loss" not in markdown_comparison(rows).split("\n\n")[0]
