"""``twotower mine`` through typer's CliRunner, on the tiny collection."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from twotower.cli.main import app
from twotower.data import load_collection
from twotower.negatives import read_negatives

runner = CliRunner()


def mine(collection, out, *extra):
    return runner.invoke(
        app, ["mine", "-d", str(collection), "--split", "test", "-o", str(out), *extra]
    )


def test_mine_bm25_writes_negatives_and_reuses_the_cache(tiny_collection, tmp_path):
    out = tmp_path / "negatives.jsonl"
    result = mine(tiny_collection, out, "--window", "1:6", "--count", "2", "--seed", "0")
    assert result.exit_code == 0, result.output
    assert "for 3 queries" in result.output and "(cached)" not in result.output
    collection = load_collection(tiny_collection)
    table = read_negatives(out, collection)
    assert list(table) == ["q1", "q2", "q3"] and table.positives["q2"] == ["d3", "d4"]
    for qid, negatives in table.negatives.items():
        assert len(negatives) <= 2 and not set(negatives) & collection.positives(qid)
    first = out.read_text()
    again = mine(tiny_collection, out, "--window", "1:6", "--count", "2", "--seed", "0")
    assert again.exit_code == 0 and "(cached)" in again.output and out.read_text() == first


def test_mine_dense_with_teacher_and_negative_queries(tiny_collection, tiny_model, tmp_path):
    out = tmp_path / "negatives.jsonl"
    result = mine(
        tiny_collection,
        out,
        "--retriever",
        "fusion",
        "-m",
        str(tiny_model),
        "--window",
        "1:6",
        "--count",
        "3",
        "--teacher",
        f"fusion:{tiny_model}",
        "--margin",
        "0.1",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["query_id"] for r in rows] == ["q1", "q2", "q3"]
    assert all(len(r["negative_ids"]) == len(r["negative_ranks"]) <= 3 for r in rows)

    dual = tmp_path / "negative-queries.jsonl"
    result = mine(
        tiny_collection,
        dual,
        "--negatives",
        "queries",
        "--retriever",
        "dense",
        "-m",
        str(tiny_model),
        "--count",
        "1",
    )
    assert result.exit_code == 0, result.output
    table = read_negatives(dual, load_collection(tiny_collection))
    assert table.kind == "queries" and set(table) == {"d1", "d3", "d4", "d6"}
    assert "negative queries for 4 documents" in result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--window", "5"], "rank window '5': expected START:END"),
        (["--window", "20:10"], "rank window 20:10: need 1 <= start <= end"),
        (["--retriever", "dense"], "--retriever dense needs --model NAME|PATH"),
        (["--retriever", "splade"], "unknown retriever 'splade'"),
        (["--teacher", "fusion:x"], "needs both --teacher and --margin"),
        (["--negatives", "passages"], "Invalid value for '--negatives'"),
        (["--count", "-1"], "Invalid value for '--count'"),
        (["--split", "train"], "no qrels for split 'train' (available: test)"),
        (
            ["--retriever", "dense", "-m", "/no/such/model"],
            "model folder /no/such/model does not exist",
        ),
    ],
)
def test_mine_bad_input_exits_2_with_one_line(tiny_collection, tmp_path, extra, message):
    args = ["mine", "-d", str(tiny_collection), "-o", str(tmp_path / "n.jsonl")]
    if "--split" not in extra:
        args += ["--split", "test"]
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", "")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    assert not (tmp_path / "n.jsonl").exists()


def test_mine_bad_collection_file_reports_the_line(tmp_path):
    from tests.conftest import write_collection

    root = write_collection(tmp_path / "bad")
    (root / "queries.jsonl").open("a").write('{"_id": "q9"}\n')
    result = runner.invoke(
        app, ["mine", "-d", str(root), "--split", "test", "-o", str(tmp_path / "n.jsonl")]
    )
    assert (
        result.exit_code == 2
        and "queries.jsonl:5 field 'text': missing required field"
        in result.output.replace("\n", "")
    )


def test_mine_through_an_approximate_index_reports_its_recall(
    tiny_collection, tiny_model, tmp_path
):
    pytest.importorskip("faiss")
    dense = ["--retriever", "dense", "-m", str(tiny_model), "--window", "1:6", "--count", "0"]
    exact_out, hnsw_out = tmp_path / "exact.jsonl", tmp_path / "hnsw.jsonl"
    assert mine(tiny_collection, exact_out, *dense).exit_code == 0
    result = mine(tiny_collection, hnsw_out, *dense, "--index", "hnsw")
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", "")
    # Its own cache entry (an approximate index may find other candidates), its recall reported.
    assert "(cached)" not in output and "recall 1.000 against exact" in output
    collection = load_collection(tiny_collection)
    exact, hnsw = read_negatives(exact_out, collection), read_negatives(hnsw_out, collection)
    assert {q: set(n) for q, n in hnsw.negatives.items()} == {
        q: set(n) for q, n in exact.negatives.items()
    }
    refused = mine(
        tiny_collection, tmp_path / "q.jsonl", *dense, "--negatives", "queries", "--index", "hnsw"
    )
    assert refused.exit_code == 2 and "--index applies to negative documents" in refused.output
