"""A NaN or infinite loss: training stops with one line (exit status 3) and keeps its checkpoints,
or skips a bounded number of steps without touching the weights or AdamW's state."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.training import test_train
from twotower.cli.main import app
from twotower.losses.margin_mse import MarginMSELoss
from twotower.training.checkpoints import last_complete_checkpoint

recipe = test_train.recipe

# 4 training examples, batches of 2, 3 epochs: 6 optimizer steps, a checkpoint after each.
STEPS = 6


def poison_margin_mse(monkeypatch, steps: set[int], value: float = float("nan")) -> None:
    """Margin-MSE (one call per step here) returns ``value`` at the given 1-based steps, through
    the graph, so the backward pass fills the gradients with NaN as a real fault would."""
    compute = MarginMSELoss.compute_loss_from_batch
    calls = {"n": 0}

    def poisoned(self, batch):
        calls["n"] += 1
        loss = compute(self, batch)
        return loss * value if calls["n"] in steps else loss

    monkeypatch.setattr(MarginMSELoss, "compute_loss_from_batch", poisoned)


def train(tmp_path, tiny_model, collection, out, *extra):
    path = recipe(tmp_path, tiny_model, collection, epochs=3, save_total_limit=STEPS)
    return CliRunner().invoke(app, ["train", str(path), "--output-dir", str(out), *extra])


def checkpoint(out, step: int) -> tuple[dict, dict]:
    folder = out / "checkpoints" / f"checkpoint-{step}"
    weights = {}
    for file in sorted(folder.rglob("*.safetensors")):
        place = file.parent.relative_to(folder)
        weights.update({f"{place}/{k}": v for k, v in load_file(file).items()})
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)["state"]
    return weights, optimizer


def assert_all_finite(weights: dict, optimizer: dict) -> None:
    assert all(torch.isfinite(t).all() for t in weights.values())
    for state in optimizer.values():
        assert all(torch.isfinite(t).all() for t in state.values())


def assert_same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    (weights_a, optim_a), (weights_b, optim_b) = a, b
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert optim_a.keys() == optim_b.keys()
    for index, state in optim_a.items():
        assert all(torch.equal(state[k], optim_b[index][k]) for k in state)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_nonfinite_loss_stops_training_and_keeps_the_checkpoint(
    tmp_path, tiny_model, train_collection, monkeypatch, value
):
    out = tmp_path / "run"
    poison_margin_mse(monkeypatch, {3}, value)
    result = train(tmp_path, tiny_model, train_collection, out)
    assert result.exit_code == 3, result.output
    (line,) = error_lines(result.output)
    shown = "nan" if value != value else "inf"
    assert (
        f"training stopped at step 3: the loss is {shown} (margin_mse={shown}, contrastive=" in line
    )
    assert "the last checkpoint (step 2)" in line and "--resume" in line
    # Nothing was written from the faulty state; the checkpoint before it loads and is finite.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "checkpoint-1",
        "checkpoint-2",
    ]
    assert last_complete_checkpoint(out / "checkpoints").endswith("checkpoint-2")
    assert_all_finite(*checkpoint(out, 2))
    assert not (out / "model").exists()

    monkeypatch.undo()
    resumed = train(tmp_path, tiny_model, train_collection, out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from" in resumed.output and "checkpoint-2" in resumed.output
    done = json.loads((out / "model" / "TRAINING_DONE").read_text())
    assert done["steps"] == STEPS


# Gradient caching back-propagates inside the loss: the skipped step is dropped all the same.
@pytest.mark.parametrize("caching", [[], ["--set", "optim.mini_batch_size=1"]], ids=["", "cached"])
def test_skipped_steps_leave_weights_and_optimizer_state_as_they_were(
    tmp_path, tiny_model, train_collection, monkeypatch, caching
):
    out = tmp_path / "skip"
    poison_margin_mse(monkeypatch, {3, 4})
    skip = ["--set", "optim.skip_nonfinite_batches=2"]
    result = train(tmp_path, tiny_model, train_collection, out, *skip, *caching)
    assert result.exit_code == 0, result.output
    logged = " ".join(result.output.split())  # the log lines as one, unwrapped
    skipped = re.findall(
        r"step (\d+): the loss is nan \(margin_mse=nan, contrastive=[-\d.]+ at"
        r" weight 0.5\); the step is skipped",
        logged,
    )
    assert skipped == ["3", "4"]
    before = checkpoint(out, 2)
    assert_all_finite(*before)
    assert_same(checkpoint(out, 3), before)
    assert_same(checkpoint(out, 4), before)
    # Training went on after the skips: step 5 moved the weights again.
    after, _ = checkpoint(out, 5)
    assert any(not torch.equal(after[k], before[0][k]) for k in after)
    assert_all_finite(*checkpoint(out, STEPS))
    done = json.loads((out / "model" / "TRAINING_DONE").read_text())
    assert done["steps"] == STEPS


def test_training_stops_after_the_bound_of_skipped_steps(
    tmp_path, tiny_model, train_collection, monkeypatch
):
    out = tmp_path / "bound"
    poison_margin_mse(monkeypatch, {2, 4, 5})
    result = train(
        tmp_path, tiny_model, train_collection, out, "--set", "optim.skip_nonfinite_batches=2"
    )
    assert result.exit_code == 3, result.output
    (line,) = error_lines(result.output)
    assert "training stopped at step 5: the loss is nan (margin_mse=nan" in line
    assert "steps 2, 4 were skipped (optim.skip_nonfinite_batches: 2)" in line
    assert "the last checkpoint (step 4)" in line
    assert last_complete_checkpoint(out / "checkpoints").endswith("checkpoint-4")
    assert_same(checkpoint(out, 4), checkpoint(out, 3))
    assert not (out / "model").exists()


def test_skip_nonfinite_batches_is_validated(tmp_path, tiny_model, train_collection):
    path = recipe(tmp_path, tiny_model, train_collection)
    result = CliRunner().invoke(
        app, ["train", str(path), "--set", "optim.skip_nonfinite_batches=-1"]
    )
    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert "optim.skip_nonfinite_batches" in line and "greater than or equal to 0" in line
