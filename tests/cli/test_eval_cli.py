import json

import pytest
from typer.testing import CliRunner

from tests.conftest import DOCS, write_collection
from twotower.cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_bm25_and_dense_eval_writes_json(tiny_collection, tiny_model, tmp_path):
    out = tmp_path / "results.json"
    result = invoke(
        "eval",
        "-m",
        "bm25",
        "-m",
        str(tiny_model),
        "-d",
        str(tiny_collection),
        "--fusion",
        "rrf",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    systems = [r["system"] for r in payload["results"]]
    assert systems[0] == "bm25" and systems[1] == str(tiny_model) and systems[2].startswith("bm25+")
    bm25 = payload["results"][0]
    assert bm25["n_queries"] == 3 and set(bm25["per_query_ndcg@10"]) == {"q1", "q2", "q3"}
    # BM25 finds each answer at rank 1 on this toy collection.
    assert bm25["metrics"]["mrr@10"] == pytest.approx(1.0)
    assert "corpus_encode_s" in payload["results"][1]["timings"]
    assert payload["models"] == {str(tiny_model): str(tiny_model.resolve())}


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (
            lambda root: (root / "corpus.jsonl").open("a").write("{not json}\n"),
            "corpus.jsonl:7: malformed JSON",
        ),
        (
            lambda root: (root / "corpus.jsonl").open("a").write(json.dumps(DOCS[0]) + "\n"),
            "corpus.jsonl:7 field '_id': duplicate id 'd1'",
        ),
        (
            lambda root: (root / "queries.jsonl").open("a").write('{"_id": "q9"}\n'),
            "queries.jsonl:5 field 'text': missing required field",
        ),
        (
            lambda root: (root / "qrels" / "test.tsv").open("a").write("q1\td2\tyes\n"),
            "test.tsv:6 field 'score': score 'yes' is not an integer",
        ),
        (
            lambda root: (root / "qrels" / "test.tsv").open("a").write("q1\td2\t1\textra\tcol\n"),
            "test.tsv:6: expected 3 tab-separated columns",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, corrupt, message):
    root = write_collection(tmp_path / "bad")
    corrupt(root)
    result = invoke("eval", "-m", "bm25", "-d", str(root))
    assert result.exit_code == 2
    assert message in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_unknown_collection_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = invoke("eval", "-m", "bm25", "-d", "no-such-set")
    assert result.exit_code == 2 and "collection 'no-such-set' not found" in result.output
