"""Kill anywhere, resume to the same result (benchmarks/kill_resume.py runs many more kills)."""

import json
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import last_logged_step, train_process, write_collection
from twotower.data.collection import load_collection
from twotower.generation import build_generator, generate_queries
from twotower.training.examples import query_key
from twotower.training.pipeline import prepare_rows
from twotower.training.recipe import load_recipe
from twotower.training.refresh import Refresher
from twotower.training.refresh_callback import RefreshCallback
from twotower.training.refresh_round import (
    RoundRequest,
    complete_rounds,
    compute_round,
    publish_round,
)
from twotower.training.refresh_state import checkpoint_state


@pytest.fixture
def one_thread(monkeypatch):
    """Child processes on one thread: two fight on a shared 2-core machine (and one thread is
    the same in every run)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _recipe(tmp_path, model, collection):
    optim = {
        "batch_size": 2,
        "epochs": 15,
        "save_steps": 2,
        "save_total_limit": 2,
        "precision": "fp32",
        "logging_steps": 1,
    }
    path = tmp_path / "kill.yaml"
    path.write_text(
        f"model: {{name: {model}}}\n"
        f"train: {{data: {collection}, split: train}}\n"
        "negatives: {source: dense, count: 1, rank_window: [1, 5]}\n"
        f"teacher: {{kind: fusion, model: {model}}}\n"
        "loss:\n  - {loss: margin_mse, weight: 1}\n"
        "  - {loss: contrastive, directions: [q2d, d2q], weight: 0.5}\n"
        f"optim: {json.dumps(optim)}\n"
    )
    return path


def _finish(process, what):
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, f"{what}: {stderr[-2000:]}"
    return stderr


def test_a_kill_during_a_step_resumes_to_bit_identical_weights(
    tmp_path, tiny_model, train_collection, one_thread
):
    path = _recipe(tmp_path, tiny_model, train_collection)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    reference = train_process(path, tmp_path / "reference", **pipes)
    out = tmp_path / "killed"
    killed = train_process(path, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    # A step after the first checkpoint: logged step 3 means step 4 is under way.
    while last_logged_step(out) < 3 and killed.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (out / "model").exists(), "the run finished before it could be killed"
    _finish(reference, "the uninterrupted run")
    resumed = train_process(path, out, "--resume", **pipes)
    assert "resuming from" in _finish(resumed, "the resumed run")
    expected = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    got = load_file(out / "model" / "model.safetensors")
    assert expected.keys() == got.keys()
    differ = [name for name in expected if not np.array_equal(expected[name], got[name])]
    assert not differ, f"the resumed weights differ from the uninterrupted run's: {differ}"


def test_a_kill_after_a_round_mid_epoch_resumes_to_bit_identical_weights(
    tmp_path, tiny_model, train_collection, one_thread
):
    # Two batches an epoch, a sync round after every third step and a checkpoint with it: the
    # checkpoint of step 3 is mid-epoch, after round 1, whose negatives step 4 draws.
    optim = {"batch_size": 2, "epochs": 6, "save_steps": 3, "save_total_limit": 2}
    optim |= {"precision": "fp32", "logging_steps": 1}
    path = tmp_path / "refresh.yaml"
    path.write_text(
        f"model: {{name: {tiny_model}}}\n"
        f"train: {{data: {train_collection}, split: train}}\n"
        "negatives: {source: dense, count: 1, rank_window: [1, 5]}\n"
        "refresh: {mode: sync, every_steps: 3, depth: 8, threads: 1}\n"
        "loss:\n  - {loss: contrastive, preset: mnrl}\n"
        f"optim: {json.dumps(optim)}\n"
    )
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    reference = train_process(path, tmp_path / "reference", **pipes)
    out = tmp_path / "killed"
    killed = train_process(path, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    written = out / "checkpoints" / "checkpoint-3" / "trainer_state.json"  # written last
    while not written.is_file() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)  # steps 4-6 take a fraction of round 2's time
    killed.wait()
    assert not (out / "checkpoints" / "checkpoint-6").exists(), "killed too late"
    _finish(reference, "the uninterrupted run")
    resumed = train_process(path, out, "--resume", **pipes)
    assert "resuming from" in _finish(resumed, "the resumed run")
    expected = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    got = load_file(out / "model" / "model.safetensors")
    differ = [name for name in expected if not np.array_equal(expected[name], got[name])]
    assert not differ, f"the resumed weights differ from the uninterrupted run's: {differ}"

    def rounds(run):
        lines = (run / "refresh_log.jsonl").read_text().splitlines()
        return [(e["generation"], e["step"], e["first_step"]) for e in map(json.loads, lines)]

    assert rounds(out) == rounds(tmp_path / "reference") == [(1, 3, 4), (2, 6, 7), (3, 9, 10)]


def test_a_killed_generate_resumes_with_each_task_exactly_once(tmp_path):
    docs = [
        {"_id": f"d{i}", "title": "", "text": f"Passage {i} starts here. It has words {i}. End."}
        for i in range(10_000)
    ]
    data = write_collection(tmp_path / "corpus", docs=docs)
    output = tmp_path / "queries.jsonl"
    command = [sys.executable, "-m", "twotower.cli.main", "generate", "--data", str(data)]
    command += ["--generator", "ict", "--output", str(output), "--per-doc", "2"]
    command += ["--batch-size", "100", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while (
        not (output.is_file() and output.stat().st_size > 0)
        and process.poll() is None
        and time.time() < deadline
    ):
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = output.read_bytes().count(b"\n")
    assert 0 < written < 20_000, f"the kill did not land mid-output ({written} lines)"
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    def lines(path):
        return (
            [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
        )

    def key(line):
        return line["doc_id"], line["type"], line["sample"]

    dropped = tmp_path / "queries.dropped.jsonl"
    counts = Counter(key(line) for line in lines(output) + lines(dropped))
    assert set(counts) == {(d["_id"], "ict", s) for d in docs for s in (0, 1)}
    assert set(counts.values()) == {1}, "a task was written twice"
    # The same lines as an uninterrupted run (the generator is seeded per task).
    again = tmp_path / "again.jsonl"
    generator = build_generator("ict")
    generate_queries(
        {d["_id"]: d["text"] for d in docs},
        [d["_id"] for d in docs],
        None,
        2,
        generator,
        again,
        batch_size=100,
        progress=False,
    )
    assert sorted(map(json.dumps, lines(output))) == sorted(map(json.dumps, lines(again)))


def _publish(tmp_path, collection_dir, model, generation, query_ids):
    request = RoundRequest(
        generation=generation,
        step=generation * 4,
        snapshot=str(model),
        train={"data": str(collection_dir), "split": "train"},
        rounds_dir=str(tmp_path / "run" / "refresh"),
        query_ids=query_ids,
        negatives=2,
        negative_queries=0,
        window=(1, 5),
        negative_query_window=(1, 3),
        depth=8,
        seed=generation,
    )
    publish_round(request, *compute_round(request, load_collection(str(collection_dir), "train")))


def test_resume_publishes_the_checkpoints_rounds_again_and_removes_later_ones(
    tmp_path, tiny_model, train_collection
):
    (tmp_path / "refresh.yaml").write_text(
        f"model: {{name: {tiny_model}}}\n"
        f"train: {{data: {train_collection}, split: train}}\n"
        "negatives: {source: dense, count: 1, rank_window: [1, 5]}\n"
        "refresh: {mode: sync, every_steps: 4, depth: 8, fraction: 0.5}\n"
        "loss:\n  - {loss: contrastive, preset: mnrl}\n"
    )
    recipe = load_recipe(tmp_path / "refresh.yaml")
    data = prepare_rows(recipe)
    run_dir = tmp_path / "run"
    interrupted = Refresher(
        recipe.refresh, recipe.negatives, recipe.train, run_dir, data.rows, data.collection
    )
    # Rounds of half the queries each, adopted in turn; the third came after the checkpoint.
    for generation, queries in ((1, ["q1", "q2"]), (2, ["q3"]), (3, ["q1", "q2", "q3"])):
        _publish(tmp_path, train_collection, tiny_model, generation, queries)
        if generation < 3:
            assert interrupted.adopt_newest(step=generation * 4)
    interrupted.launched, interrupted.last_launch_step = 2, 8
    # What the trainer writes into trainer_state.json at a checkpoint.
    from transformers import TrainerState

    trainer_state = TrainerState(stateful_callbacks=[RefreshCallback(interrupted)])
    checkpoint = run_dir / "checkpoints" / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    trainer_state.save_to_json(str(checkpoint / "trainer_state.json"))
    assert checkpoint_state(checkpoint) == {
        "adopted_rounds": [1, 2],
        "launched": 2,
        "last_launch_step": 8,
    }

    # The interrupted run went on to adopt round 3 and was killed writing its next log line.
    log_path = run_dir / "refresh_log.jsonl"
    with log_path.open("a") as handle:
        handle.write(json.dumps({"generation": 3, "step": 12, "adopted_at_step": 13}) + "\n")
        handle.write('{"generation": 4, "st')

    rows = prepare_rows(recipe).rows
    resumed = Refresher(
        recipe.refresh,
        recipe.negatives,
        recipe.train,
        run_dir,
        rows,
        data.collection,
        resuming=True,
        checkpoint=str(checkpoint),
    )
    assert [p.name for p in complete_rounds(run_dir / "refresh")] == ["round-00001", "round-00002"]
    assert rows.generation == data.rows.generation == 2
    for index, example in enumerate(rows.examples):
        assert rows.drawn(index).negative_keys == data.rows.drawn(index).negative_keys, query_key(
            example
        )
    assert (resumed.adopted, resumed.next_generation, resumed.last_launch_step) == (2, 3, 8)
    assert not resumed.due(step=11) and resumed.due(step=12)  # the cadence of the interrupted run
    assert not resumed.adopt_newest(step=10)  # nothing newer than the checkpoint's rounds
    # The log is as the checkpoint saw it: report.md shows no round twice.
    logged = [json.loads(line)["generation"] for line in log_path.read_text().splitlines()]
    assert logged == [1, 2]
