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


def test_dual_task_reverses_the_qrels(tiny_collection, tiny_model, tmp_path, monkeypatch):
    """DANCE's dual task: each relevant document ranks the split's queries."""
    import numpy as np

    from twotower.data import load_collection
    from twotower.evaluation import evaluate_dual
    from twotower.models import Encoder

    collection = load_collection(str(tiny_collection), "test")
    # test qrels: q1-d1, q2-d3 (2), q2-d4, q3-d6
    assert collection.judging_queries() == {
        "d1": {"q1": 1},
        "d3": {"q2": 2},
        "d4": {"q2": 1},
        "d6": {"q3": 1},
    }
    encoder = Encoder.from_name(str(tiny_model), show_progress=False)
    # Known embeddings (the tiny model ties its queries): rows of the corpus d1..d6, queries q1..q3.
    import twotower.evaluation.evaluate as evaluate

    corpus = np.eye(6, 3)[
        [0, 1, 1, 2, 0, 2]
    ]  # d1 ~ q1, d2 ~ q2, d3 ~ q2, d4 ~ q3, d5 ~ q1, d6 ~ q3
    queries = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.1], [0.0, 0.2, 1.0]])
    monkeypatch.setattr(evaluate, "encode_corpus", lambda *a, **k: (corpus, True))
    monkeypatch.setattr(evaluate, "encode_queries", lambda *a, **k: (queries, True))
    (result,) = evaluate_dual(collection, [encoder], metrics=["ndcg@10", "recall@10"])
    assert result.n_queries == 4 and result.details["task"] == "dual"
    assert result.metrics["recall@10"] == pytest.approx(1.0)  # 3 queries: all are retrieved
    # d1 ranks q1 first, d3 ranks q2 first, d4 (~q3) ranks its q2 second, d6 ranks q3 first.
    expected = {"d1": 1.0, "d3": 1.0, "d4": 1 / np.log2(3), "d6": 1.0}
    assert {d: v["ndcg@10"] for d, v in result.per_query.items()} == pytest.approx(expected)
    monkeypatch.undo()
    cli = invoke("eval", "-m", str(tiny_model), "-d", str(tiny_collection), "--task", "dual")
    assert cli.exit_code == 0 and "(dual)" in cli.output, cli.output
    refused = invoke("eval", "-m", "bm25", "-d", str(tiny_collection), "--task", "dual")
    assert refused.exit_code == 2 and "dense models only" in refused.output


def test_eval_through_faiss_indexes_reports_recall_against_exact(
    tiny_collection, tiny_model, tmp_path
):
    pytest.importorskip("faiss")
    payloads = {}
    for index in ("exact", "flat", "hnsw"):
        out = tmp_path / f"{index}.json"
        result = invoke("eval", "-m", str(tiny_model), "-d", str(tiny_collection), "-o", str(out))
        if index != "exact":
            result = invoke(
                "eval",
                "-m",
                str(tiny_model),
                "-d",
                str(tiny_collection),
                "--index",
                index,
                "-o",
                str(out),
            )
        assert result.exit_code == 0, result.output
        payloads[index] = json.loads(out.read_text())["results"][0]
    exact, flat, hnsw = payloads["exact"], payloads["flat"], payloads["hnsw"]
    assert flat["metrics"] == pytest.approx(exact["metrics"])
    assert flat["details"]["index"] == "flat" and "index_recall" not in flat["timings"]
    # Six documents: the graph holds them all, so nothing is lost, and the metrics are exact's.
    assert hnsw["details"]["index"].startswith("hnsw(") and hnsw["timings"]["index_recall"] == 1.0
    assert hnsw["metrics"] == pytest.approx(exact["metrics"])


def test_an_index_needs_faiss_and_a_known_type(tiny_collection, tiny_model, monkeypatch):
    result = invoke("eval", "-m", str(tiny_model), "-d", str(tiny_collection), "--index", "annoy")
    assert result.exit_code == 2 and "--index" in result.output
    monkeypatch.setattr("twotower.retrieval.ann.faiss_available", lambda: False)
    result = invoke("eval", "-m", str(tiny_model), "-d", str(tiny_collection), "--index", "ivf")
    assert result.exit_code == 2, result.output
    assert "--index: a FAISS index needs FAISS (pip install faiss-cpu)" in result.output
