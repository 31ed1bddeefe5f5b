"""``twotower generate`` end to end with the model-free generators, and its one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from twotower.cli.main import app
from twotower.data import load_corpus, load_synthetic_queries

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["generate", *map(str, args)])


def test_ict_end_to_end_then_resumed(tiny_collection, tmp_path):
    out = tmp_path / "ict.jsonl"
    report = tmp_path / "report.json"
    result = invoke(
        "-d",
        tiny_collection,
        "-g",
        "ict",
        "--per-doc",
        2,
        "-o",
        out,
        "--report",
        report,
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert "wrote 12 queries (ict 12)" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["type"] for r in rows} == {"ict"} and len({r["query_id"] for r in rows}) == 12
    collection, types = load_synthetic_queries(out, load_corpus(tiny_collection))
    assert types == {"ict": 12} and len(collection.queries) == 12
    payload = json.loads(report.read_text())
    assert (
        payload["written"] == 12
        and payload["data"] == "tiny"
        and payload["generator"]["kind"] == "ict"
    )
    again = invoke("-d", tiny_collection, "-g", "ict", "--per-doc", 2, "-o", out, "--no-progress")
    assert (
        again.exit_code == 0
        and "wrote 0 queries" in again.output
        and "12 already done" in again.output
    )
    assert len(out.read_text().splitlines()) == 12


def test_crop_with_a_seeded_sample(tiny_collection, tmp_path):
    out = tmp_path / "crop.jsonl"
    result = invoke(
        "-d", tiny_collection, "-g", "crop", "--sample", 3, "--seed", 4, "-o", out, "--no-progress"
    )
    assert result.exit_code == 0, result.output
    assert len({json.loads(line)["doc_id"] for line in out.read_text().splitlines()}) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-g", "ict", "-t", "questons"], "query type 'questons'"),
        (["-g", "ict", "-t", "questions"], "type 'ict' only"),
        (["-g", "smolm2", "-t", "questions"], "did you mean 'smollm2'"),
        (["-g", "ict", "--limit", "2", "--sample", "2"], "give one"),
        (["-g", "ict", "--top-p", "0"], "--top-p"),
        (["-g", "ict", "--timeout", "0"], "--timeout"),
        (["-g", "ict", "--per-doc", "0"], "--per-doc"),
        (["-g", "ict", "--api", "rest"], "--api"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_collection, tmp_path, args, message):
    result = invoke("-d", tiny_collection, "-o", tmp_path / "x.jsonl", "--no-progress", *args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
