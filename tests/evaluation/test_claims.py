"""benchmarks/claims.py's verdicts and its probe test over seeds (benchmarks/ is on pytest's path)."""

import json

import claims
import pytest
from scipy import stats


def _row(collection, difference, p):
    return {"collection": collection, "difference": difference, "p": p}


HIGHER = claims.Claim("p", "a beats b", "a", "b", "ndcg@10", ("x", "y"), +1)
NOT_HIGHER = claims.Claim("p", "a does not beat b", "a", "b", "ndcg@10", ("x", "y"), 0)
LOWER = claims.Claim("p", "a lowers it", "a", "b", "probe:anisotropy_queries", ("x",), -1)


@pytest.mark.parametrize(
    ("claim", "rows", "expected"),
    [
        (HIGHER, [_row("x", 0.02, 0.01), _row("y", 0.001, 0.7)], "reproduced"),
        (HIGHER, [_row("x", 0.02, 0.01), _row("y", -0.001, 0.7)], "not reproduced at this scale"),
        (HIGHER, [_row("x", 0.02, 0.2), _row("y", 0.01, 0.3)], "not reproduced at this scale"),
        (HIGHER, [_row("x", 0.02, 0.01), _row("y", -0.03, 0.02)], "contradicted (y)"),
        (NOT_HIGHER, [_row("x", 0.02, 0.2), _row("y", -0.03, 0.01)], "reproduced"),
        (
            NOT_HIGHER,
            [_row("x", 0.02, 0.01), _row("y", 0.0, 1.0)],
            "not reproduced: significantly above on x",
        ),  # fmt: skip
        (LOWER, [_row("x", -0.01, 0.03)], "reproduced"),
        (LOWER, [_row("x", 0.01, 0.03)], "contradicted (x)"),
        (LOWER, [_row("x", -0.01, None)], "not reproduced at this scale"),
    ],
)
def test_verdicts(claim, rows, expected):
    assert claims.verdict(claim, rows) == expected


def test_a_probe_claim_is_welchs_t_over_the_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "RUNS", tmp_path)
    values = {"a": [0.10, 0.12, 0.11], "b": [0.20, 0.18, 0.19]}
    for system, seeds in values.items():
        for seed, value in enumerate(seeds):
            folder = tmp_path / f"{system}@{seed}"
            (folder / "probe").mkdir(parents=True)
            (folder / "results.json").write_text("{}")
            probe = {"models": {"trained": {"summary": {"anisotropy_queries": value}}}}
            (folder / "probe" / "probe.json").write_text(json.dumps(probe))
    row = claims.probe_row(LOWER)
    assert row["system_values"] == values["a"] and row["baseline_values"] == values["b"]
    assert row["difference"] == pytest.approx(0.11 - 0.19)
    assert row["p"] == pytest.approx(
        stats.ttest_ind(values["a"], values["b"], equal_var=False).pvalue
    )
    assert claims.verdict(LOWER, [row]) == "reproduced"
