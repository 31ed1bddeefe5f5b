"""Training end to end on a tiny model the tests build; kill -9 and resume."""

import json
import math
import signal
import subprocess
import time

import pytest
from sentence_transformers import SentenceTransformer
from typer.testing import CliRunner

from tests.conftest import train_process
from twotower.cli.main import app


def recipe(tmp_path, model, collection, **optim):
    optim = {
        "batch_size": 2,
        "epochs": 1,
        "save_steps": 1,
        "precision": "fp32",
        "logging_steps": 1,
        **optim,
    }
    text = f"""# test recipe
model: {{name: {model}}}
train: {{data: {collection}, split: train}}
negatives: {{source: dense, count: 1, rank_window: [1, 5]}}
teacher: {{kind: fusion, model: {model}}}
loss:
  - {{loss: margin_mse, weight: 1}}
  - {{loss: contrastive, directions: [q2d, d2q], weight: 0.5}}
optim: {json.dumps(optim)}
eval: {{collections: [{collection}], probe: true}}
"""
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def test_run_trains_evaluates_and_reports(tmp_path, tiny_model, train_collection):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", str(recipe(tmp_path, tiny_model, train_collection)), "--output-dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    for name in (
        "recipe.yaml",
        "train_log.jsonl",
        "results.json",
        "report.md",
        "model/TRAINING_DONE",
        "probe/tsne.png",
    ):
        assert (out / name).is_file(), name
    payload = json.loads((out / "results.json").read_text())
    systems = {r["system"] for r in payload["results"]}
    assert systems == {"bm25", "base", "trained"}
    assert payload["train"]["mining"]["negatives"] > 0
    report = (out / "report.md").read_text()
    assert (
        "| c | ndcg@10 |" in report
        and "Δ (trained − base)" in report
        and "probe/tsne.png" in report
    )
    # The saved model is a plain sentence-transformers model.
    assert SentenceTransformer(str(out / "model"), device="cpu").encode(["cats"]).shape == (1, 32)
    # A second run of the same recipe reuses the trained model.
    again = CliRunner().invoke(
        app, ["run", str(out / "recipe.yaml"), "--output-dir", str(out), "--no-probe"]
    )
    assert again.exit_code == 0 and "already holds the model" in again.output


def test_separate_towers_train_and_save(tmp_path, tiny_model, train_collection):
    path = recipe(tmp_path, tiny_model, train_collection)
    out = tmp_path / "sep"
    result = CliRunner().invoke(
        app, ["train", str(path), "--output-dir", str(out), "--set", "model.towers=separate"]
    )
    assert result.exit_code == 0, result.output
    model = SentenceTransformer(str(out / "model"), device="cpu")
    assert model.encode_query(["cats"]).shape == model.encode_document(["cats"]).shape == (1, 32)


def test_sigkill_after_first_checkpoint_then_resume(tmp_path, tiny_model, train_collection):
    # Long enough (80 steps, a checkpoint each) that it cannot end before the kill.
    path = recipe(tmp_path, tiny_model, train_collection, epochs=40)
    out = tmp_path / "killed"
    log = (tmp_path / "first.log").open("w")
    process = train_process(path, out, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while (
        not list(out.glob("checkpoints/checkpoint-*/trainer_state.json"))
        and process.poll() is None
        and time.time() < deadline
    ):
        time.sleep(0.02)
    assert list(out.glob("checkpoints/checkpoint-*/trainer_state.json")), (
        tmp_path / "first.log"
    ).read_text()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "model" / "TRAINING_DONE").exists(), (
        "the run finished before it could be killed"
    )
    resumed = train_process(
        path, out, "--resume", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stderr = resumed.communicate(timeout=300)[1]
    assert resumed.returncode == 0, stderr[-2000:]
    done = json.loads((out / "model" / "TRAINING_DONE").read_text())
    assert (
        done["steps"] == 80
    )  # 4 examples / batch 2 × 40 epochs: the full schedule, not a restart's remainder
    assert "resuming from" in stderr


def test_frozen_document_tower_trains_queries_only(tmp_path, tiny_model, train_collection):
    import torch

    from twotower.models.encoder import route_modules

    text = f"""# frozen document tower
model: {{name: {tiny_model}, towers: separate, train_document_tower: false}}
train: {{data: {train_collection}, split: train}}
negatives: {{source: dense, count: 3, rank_window: [1, 6]}}
loss:
  - {{loss: contrastive, preset: mnrl}}
optim: {{batch_size: 2, epochs: 2, learning_rate: 1.0e-3, precision: fp32, save_steps: 100, wise_ft: 0.5}}
"""
    path = tmp_path / "frozen.yaml"
    path.write_text(text)
    out = tmp_path / "frozen"
    result = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    base = SentenceTransformer(str(tiny_model), device="cpu")
    trained = SentenceTransformer(str(out / "model"), device="cpu")

    def weights(model, task):
        return torch.cat(
            [p.detach().flatten() for m in route_modules(model, task) for p in m.parameters()]
        )

    base_weights = weights(base, "document")
    assert torch.equal(weights(trained, "document"), base_weights), (
        "the document tower must not change"
    )
    moved = weights(trained, "query") - base_weights
    assert moved.abs().max() > 0, "the query tower must train"
    # The saved document tower embeds exactly as the base model, so its corpus cache is reused.
    from twotower.models import Encoder

    assert Encoder(trained).fingerprint_for("document") == Encoder(base).fingerprint_for("document")
    assert Encoder(trained).fingerprint_for("query") != Encoder(base).fingerprint_for("query")


def test_listwise_distillation_against_a_frozen_document_index(
    tmp_path, tiny_model, train_collection
):
    """A teacher's listwise distribution over [positive, mined candidates] trains the query
    tower against the frozen index; every logged loss is finite."""
    text = f"""# listwise, frozen document tower
model: {{name: {tiny_model}, towers: separate, train_document_tower: false}}
train: {{data: {train_collection}, split: train}}
negatives: {{source: fusion, count: 4, rank_window: [1, 6]}}
teacher: {{kind: fusion, model: {tiny_model}}}
loss:
  - {{loss: listwise_kl, contrastive_weight: 0.1}}
optim: {{batch_size: 2, epochs: 2, learning_rate: 1.0e-3, precision: fp32, save_steps: 100, logging_steps: 1}}
"""
    path = tmp_path / "frozen-listwise.yaml"
    path.write_text(text)
    out = tmp_path / "frozen-listwise"
    result = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log if "loss" in row]
    assert losses and all(math.isfinite(v) and v > 0 for v in losses)
    done = json.loads((out / "model" / "TRAINING_DONE").read_text())
    assert done["steps"] == 4


def test_wise_ft_interpolates_towards_base():
    import torch

    from twotower.training.wise_ft import base_weights, interpolate

    model = torch.nn.Linear(2, 2)
    base = base_weights(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    expected = base["weight"] + 0.25
    interpolate(model, base, 0.25)
    assert torch.allclose(model.weight, expected)


def test_gradient_caching_trains_from_a_recipe(tmp_path, tiny_model, train_collection):
    out = tmp_path / "cached"
    path = recipe(tmp_path, tiny_model, train_collection, mini_batch_size=1)
    result = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in row for row in log) and (out / "model" / "TRAINING_DONE").is_file()


def test_gradient_caching_with_separate_towers(tmp_path, tiny_model, train_collection):
    path = recipe(tmp_path, tiny_model, train_collection, mini_batch_size=1)
    out = tmp_path / "cached-sep"
    result = CliRunner().invoke(
        app, ["train", str(path), "--output-dir", str(out), "--set", "model.towers=separate"]
    )
    assert result.exit_code == 0, result.output
    model = SentenceTransformer(str(out / "model"), device="cpu")
    assert model.encode_query(["cats"]).shape == (1, 32)


def test_gradient_caching_is_refused_with_a_frozen_document_tower(
    tmp_path, tiny_model, train_collection
):
    from twotower.errors import ConfigError
    from twotower.training.recipe import load_recipe

    path = recipe(tmp_path, tiny_model, train_collection, mini_batch_size=2)
    with pytest.raises(
        ConfigError, match="mini_batch_size .gradient caching. is for training both towers"
    ):
        load_recipe(
            path,
            [
                "model.towers=separate",
                "model.train_document_tower=false",
                "loss=[{loss: contrastive}]",
                "teacher.kind=none",
            ],
        )


def test_no_batch_without_a_repeated_text_is_one_line_not_an_untrained_model(tmp_path, tiny_model):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"query": f"query {i}", "positive": "Cats purr."}) + "\n" for i in range(6)
        )
    )
    path = tmp_path / "pairs.yaml"
    path.write_text(
        f"model: {{name: {tiny_model}}}\ntrain: {{pairs: {pairs}, data: null}}\n"
        "loss:\n  - {loss: contrastive, preset: mnrl}\n"
        'optim: {"batch_size": 2, "epochs": 1, "save_steps": 100, "precision": "fp32"}\n'
    )
    result = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no training step ran" in result.output
    assert not (tmp_path / "run" / "model").exists()
