"""``twotower teach`` through typer's CliRunner, on the tiny collection."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from twotower.cli.main import app
from twotower.negatives import NegativesTable, write_negatives

runner = CliRunner()


@pytest.fixture
def pairs_file(tmp_path):
    table = NegativesTable(
        {"q1": ["d2", "d3"], "q2": ["d1", "d5"], "q3": ["d4", "d5"]},
        positives={"q1": ["d1"], "q2": ["d3", "d4"], "q3": ["d6"]},
    )
    path = tmp_path / "negatives.jsonl"
    write_negatives(path, table)
    return path


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_teach_scores_positives_and_negatives_then_hits_the_cache(
    tiny_cross_encoder, tiny_collection, pairs_file, tmp_path
):
    out = tmp_path / "scores.jsonl"
    args = [
        "teach",
        "-d",
        str(tiny_collection),
        "--split",
        "test",
        "--teacher",
        f"cross-encoder:{tiny_cross_encoder}",
        "--pairs",
        str(pairs_file),
        "-o",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    first = rows(out)
    assert [(r["query_id"], r["doc_id"]) for r in first] == [
        ("q1", "d1"),
        ("q1", "d2"),
        ("q1", "d3"),
        ("q2", "d3"),
        ("q2", "d4"),
        ("q2", "d1"),
        ("q2", "d5"),
        ("q3", "d6"),
        ("q3", "d4"),
        ("q3", "d5"),
    ]
    assert (
        "scored 10 pairs for 3 queries" in result.output
        and "0 cached, 10 computed" in result.output
    )
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "10 cached, 0 computed" in again.output
    assert rows(out) == first


def test_teach_normalize_and_drop(tiny_model, tiny_collection, pairs_file, tmp_path):
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(
        app,
        [
            "teach",
            "-d",
            str(tiny_collection),
            "--split",
            "test",
            "--teacher",
            f"fusion:{tiny_model}",
            "--alpha",
            "0.7",
            "--pairs",
            str(pairs_file),
            "--normalize",
            "--drop-below",
            "80",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    written = rows(out)
    assert all(0.0 <= r["score"] <= 1.0 and "raw_score" in r for r in written)
    assert "queries below the 80th percentile dropped" in result.output
    # The 80th percentile of all ten scores drops one of three queries (the best scores' median
    # would drop one whatever the scores).
    assert len({r["query_id"] for r in written}) == 2


def test_teach_scores_negative_query_tables(tiny_model, tiny_collection, tmp_path):
    pairs = tmp_path / "negative-queries.jsonl"
    write_negatives(
        pairs,
        NegativesTable(
            {"d1": ["q2", "q3"], "d6": ["q1"]},
            positives={"d1": ["q1"], "d6": ["q3"]},
            kind="queries",
        ),
    )
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(
        app,
        [
            "teach",
            "-d",
            str(tiny_collection),
            "--split",
            "test",
            "--teacher",
            f"bi-encoder:{tiny_model}",
            "--pairs",
            str(pairs),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted((r["query_id"], r["doc_id"]) for r in rows(out)) == [
        ("q1", "d1"),
        ("q1", "d6"),
        ("q2", "d1"),
        ("q3", "d1"),
        ("q3", "d6"),
    ]


@pytest.mark.parametrize(
    "setup, extra, message",
    [
        (
            lambda p: p.write_text(
                '{"query_id": "q1", "negative_ids": ["d2"]}\n{"query_id": "q2", "negative_ids": "d1"}\n'
            ),
            [],
            "negatives.jsonl:2 field 'negative_ids': expected a list of ids, got str",
        ),
        (
            lambda p: p.write_text('{"query_id": "q1", "negative_ids": ["d99"]}\n'),
            [],
            "negatives.jsonl:1 field 'negative_ids': unknown document id 'd99'",
        ),
        (
            lambda p: None,
            ["--teacher", "oracle:x"],
            "teacher 'oracle:x': expected cross_encoder:NAME",
        ),
        (
            lambda p: None,
            ["--teacher", "cross-encoder:/no/such/model"],
            "model folder /no/such/model does not exist",
        ),
        (lambda p: None, ["--drop-below", "120"], "--drop-below must be in [0, 100), got 120"),
    ],
)
def test_teach_bad_input_exits_2_with_one_line(
    tiny_collection, pairs_file, tmp_path, setup, extra, message
):
    setup(pairs_file)
    args = [
        "teach",
        "-d",
        str(tiny_collection),
        "--split",
        "test",
        "--teacher",
        "bi-encoder:unused",
        "--pairs",
        str(pairs_file),
        "-o",
        str(tmp_path / "out.jsonl"),
    ]
    result = runner.invoke(app, _override(args, extra))
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", "")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2


def _override(args, extra):
    args = list(args)
    for option, value in zip(extra[::2], extra[1::2], strict=True):
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
    return args
