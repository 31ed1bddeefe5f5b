"""``twotower compare`` on a tiny results file as ``twotower run`` leaves it: the printed table,
the markdown and JSON files, and exit status 2 with one line for bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.evaluation._results import A, B, results_file
from twotower.cli.main import app
from twotower.evaluation.significance import paired_test

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_compare_a_runs_results_file_prints_and_writes_the_tables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results_file(tmp_path / "runs" / "tiny" / "results.json", {"bm25": B, "base": B, "trained": A})
    result = invoke("compare", "runs/tiny/results.json", "-o", "table.md")
    assert result.exit_code == 0, result.output
    expected = paired_test(A, B)
    assert "scifact (test): ndcg@10 against base, 5 queries" in result.output
    assert "+0.2400" in result.output and "4/1" in result.output
    assert f"{expected.randomisation_p_value:.4f}" in result.output
    markdown = (tmp_path / "table.md").read_text()
    assert "| trained | 0.5400 | +0.2400 | 4/1 | 2.45 |" in markdown

    result = invoke(
        "compare",
        "runs/tiny/results.json",
        "--baseline",
        "bm25",
        "--metric",
        "NDCG@10",
        "-o",
        "t.json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "t.json").read_text())
    assert payload["baseline"] == "bm25" and payload["metric"] == "ndcg@10"
    trained = payload["tables"][0]["systems"][1]
    assert trained["system"] == "trained"
    assert trained["randomisation_p_value"] == expected.randomisation_p_value
    assert trained["t_p_holm"] == min(1.0, 2 * expected.t_p_value)  # two systems against bm25


def test_bad_input_is_one_line_and_exit_status_2(tmp_path):
    path = results_file(tmp_path / "results.json", {"base": B, "trained": A})
    payload = json.loads(path.read_text())
    del payload["results"][0]["per_query_ndcg@10"]
    path.write_text(json.dumps(payload))
    result = invoke("compare", path)
    assert result.exit_code == 2
    assert "field 'results[0].per_query_ndcg@10': no per-query scores for ndcg@10" in result.output
    assert "Traceback" not in result.output

    good = results_file(tmp_path / "good.json", {"base": B, "trained": A})
    for args, message in [
        (("--baseline", "nope"), "no system 'nope'"),
        (("--metric", "ndcg"), "unknown metric 'ndcg'"),
        (("-c", "cisi"), "--collections: no scores for cisi"),
        (("-o", "table.txt"), "use a .md or .json file"),
    ]:
        result = invoke("compare", good, *args)
        assert result.exit_code == 2, args
        assert message in result.output and "Traceback" not in result.output
