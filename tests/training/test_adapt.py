"""``twotower adapt``: a corpus alone to an adapted model, its paired comparison, resume after a
kill between stages, and a corpus with nothing to write queries from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import write_collection
from tests.training.test_recipes_smoke import write_smoke_collection
from twotower.cli.main import app

SMALL = [
    "--set",
    "negatives.count=5",
    "--set",
    "negatives.rank_window=[1, 8]",
    "--set",
    "optim.batch_size=2",
    "--set",
    "optim.max_steps=3",
    "--set",
    "eval.probe=false",
]


def adapt_args(collection: Path, model: Path, out: Path) -> list[str]:
    return [
        "adapt",
        "--data",
        str(collection),
        "--model",
        str(model),
        "--teacher",
        f"fusion:{model}",
        "--output-dir",
        str(out),
        *SMALL,
    ]


def test_adapt_trains_on_generated_queries_only_and_compares_with_base(tmp_path, tiny_model):
    collection = write_smoke_collection(tmp_path / "smoke")
    out = tmp_path / "adapted"
    result = CliRunner().invoke(app, adapt_args(collection, tiny_model, out))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "data.json").read_text())
    # Every training query is a generated one: no judged query of the collection trains.
    assert data["synthetic_queries"]["labelled_queries"] == 0
    queries = [json.loads(line) for line in (out / "queries" / "queries.jsonl").open()]
    assert queries and {q["type"] for q in queries} == {"ict", "crop"}  # the recipe's mix
    assert {q["doc_id"] for q in queries} <= {f"d{i}" for i in range(16)}
    payload = json.loads((out / "results.json").read_text())
    assert payload["train"]["steps"] == 3
    ndcg = [r for r in payload["comparison"] if r["metric"] == "ndcg@10"]
    assert len(ndcg) == 1 and ndcg[0]["bm25"] is not None and ndcg[0]["p_value"] is not None
    assert "| p | wins/losses |" in (out / "report.md").read_text()


def test_adapt_resumes_after_a_kill_between_stages(tmp_path, tiny_model):
    """Killed once its queries are written (the generation stage is over): the run started
    again reuses them and finishes."""
    collection = write_smoke_collection(tmp_path / "smoke")
    out = tmp_path / "adapted"
    command = [sys.executable, "-m", "twotower.cli.main", *adapt_args(collection, tiny_model, out)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    manifest = out / "queries" / "queries.settings.json"
    deadline = time.monotonic() + 240
    while not manifest.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert manifest.is_file(), "the generation stage never finished"
    assert not (out / "results.json").is_file(), "killed too late: the run had finished"
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    data = json.loads((out / "data.json").read_text())
    assert data["synthetic_step"] == {"reused": str(out / "queries" / "queries.jsonl")}
    assert (out / "model" / "TRAINING_DONE").is_file()


def test_a_corpus_with_no_usable_passage_is_one_line_and_exit_2(tmp_path, tiny_model):
    docs = [{"_id": f"d{i}", "title": "", "text": ""} for i in range(3)]
    collection = write_collection(tmp_path / "empty", docs, [], "query-id\tcorpus-id\tscore\n")
    result = CliRunner().invoke(app, adapt_args(collection, tiny_model, tmp_path / "out"))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "corpus.jsonl: no usable passage" in errors[0]
