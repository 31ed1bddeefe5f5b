"""A 2-process torchrun (gloo, CPU) of `twotower run`: rank 0 mines, saves, evaluates and
reports once; the other rank reads rank 0's caches and only trains. Both encode the corpus,
half each, for mining and for evaluation."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import QRELS, write_collection


def torchrun(tmp_path, tiny_model, command: str, sections: str) -> tuple[str, Path]:
    """``torchrun --nproc_per_node 2 -m twotower.cli COMMAND`` (the module form, as a launcher
    takes it) of a recipe on the tiny collection with ``sections`` appended, on gloo; its log
    and cache folder."""
    root = write_collection(tmp_path / "c")
    (root / "qrels" / "train.tsv").write_text(QRELS)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {{name: {tiny_model}}}\n"
        f"train: {{data: {root}, split: train}}\n"
        "negatives: {source: dense, count: 1, rank_window: [1, 5]}\n"
        "loss:\n  - {loss: contrastive, preset: mnrl}\n" + sections.format(root=root)
    )
    cache = tmp_path / "cache"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2"]
        + ["-m", "twotower.cli", command, str(recipe), "--output-dir", str(tmp_path / "run")],
        env={**os.environ, "TWOTOWER_CACHE": str(cache), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr, cache


def test_a_two_process_run_writes_one_model_one_cache_entry_and_one_report(tmp_path, tiny_model):
    log, cache = torchrun(
        tmp_path,
        tiny_model,
        "run",
        "optim: {{batch_size: 2, epochs: 2, save_steps: 100, precision: fp32}}\n"
        "eval: {{collections: [{root}], split: test, probe: false}}\n",
    )
    assert log.count("training on 4 examples") == 1  # rank 1 logs warnings only
    run = tmp_path / "run"
    assert (run / "model" / "TRAINING_DONE").is_file()
    assert (run / "report.md").is_file() and (run / "results.json").is_file()
    assert len(list((cache / "negatives").glob("*.jsonl"))) == 1
    assert log.count("base → trained") == 1  # one evaluation table, from rank 0
    # Corpus encodings are sharded: rank 0 encodes documents 0–3 of 6 (rank 1 the rest, logging
    # nothing), for mining (the base model at the recipe's document length, so the base
    # model's evaluation reads the same entry) and for the trained model; mining and
    # evaluation then read rank 0's cache entries.
    assert log.count("rank 0 encodes documents 0–3 of 6") == 2, log[-3000:]
    corpus_entries = [p for p in (cache / "embeddings").glob("*.npy") if p.stat().st_size]
    assert all(p.with_name(p.name + ".sha256").is_file() for p in corpus_entries)


def test_the_command_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "twotower.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "Usage: twotower" in result.stdout


def test_refresh_under_torchrun_puts_each_round_in_use_on_every_rank(tmp_path, tiny_model):
    """Rank 0 runs the sync rounds; before the next step every rank publishes the same round
    (rank 0 checks all of them did and says so), and one refresh log is written."""
    import json

    log, _ = torchrun(
        tmp_path,
        tiny_model,
        "train",
        "refresh: {{mode: sync, every_steps: 1, depth: 6}}\n"
        "optim: {{batch_size: 1, epochs: 2, save_steps: 100, precision: fp32}}\n",
    )
    # 4 examples over 2 ranks, batch 1, 2 epochs: 4 steps; a round after steps 1-3.
    adopted = [
        json.loads(line)
        for line in (tmp_path / "run" / "refresh_log.jsonl").read_text().splitlines()
    ]
    assert [entry["generation"] for entry in adopted] == [1, 2, 3]
    for generation in (1, 2, 3):
        assert log.count(f"refresh round {generation} in use on all 2 ranks") == 1, log[-3000:]
    assert "not in use on every rank" not in log
