"""``import twotower``: a light top level whose names are the library functions the commands
call, and ``python -m twotower`` as the ``twotower`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import twotower

HEAVY = ("torch", "sentence_transformers", "transformers", "twotower.training", "twotower.cli")


def test_importing_twotower_imports_neither_torch_nor_sentence_transformers():
    code = (
        "import json, sys, twotower; print(json.dumps([twotower.__version__, sorted(sys.modules)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    version, modules = json.loads(out)
    assert version == "0.1.0"
    loaded = [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == []


def test_each_name_is_the_library_function_its_command_calls():
    from twotower.data.collection import load_collection
    from twotower.evaluation.evaluate import EvalResult, evaluate_dual, evaluate_systems
    from twotower.models.encoder import Encoder
    from twotower.training.pipeline import train_recipe
    from twotower.training.recipe import Recipe, load_recipe
    from twotower.training.run import run_recipe

    assert twotower.load_recipe is load_recipe
    assert twotower.Recipe is Recipe
    assert twotower.run is run_recipe
    assert twotower.train is train_recipe
    assert twotower.evaluate is evaluate_systems
    assert twotower.evaluate_dual is evaluate_dual
    assert twotower.EvalResult is EvalResult
    assert twotower.load_collection is load_collection
    assert twotower.Encoder is Encoder
    assert set(twotower.__all__) <= set(dir(twotower))
    with pytest.raises(AttributeError, match="module 'twotower' has no attribute 'trian'"):
        twotower.trian  # noqa: B018


def test_python_m_twotower_is_the_command():
    help_text = subprocess.run(
        [sys.executable, "-m", "twotower", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "Usage: twotower [OPTIONS] COMMAND" in help_text
    for command in ("eval", "train", "run", "mine", "teach", "probe", "generate", "filter"):
        assert f" {command} " in help_text, command


def test_adapt_builds_the_adaptation_recipe_and_runs_it(
    tmp_path, tiny_model, tiny_collection, monkeypatch
):
    pytest.importorskip("twotower.training.adapt")  # the adapt command's module, landing apart
    recipe = tmp_path / "adapt.yaml"
    recipe.write_text(
        f"model: {{name: {tiny_model}}}\n"
        "teacher: {kind: fusion, model: base}\n"
        "loss: [{loss: contrastive, preset: mnrl}]\n"
    )
    calls = []

    def fake_run(loaded, run_dir, **kwargs):
        calls.append((loaded, run_dir, kwargs))
        return {"comparison": []}

    monkeypatch.setattr("twotower.training.run.run_recipe", fake_run)
    out = tmp_path / "run"
    payload = twotower.adapt(
        str(tiny_collection),
        output_dir=str(out),
        recipe=recipe,
        generator="ict",
        per_doc=2,
        teacher=f"cross_encoder:{tiny_model}",
        overrides=["optim.epochs=2"],
        device="cpu",
    )
    assert payload == {"comparison": []}
    [(loaded, run_dir, kwargs)] = calls
    assert run_dir == out and kwargs == {"resume": None, "device": "cpu"}
    assert loaded.train.data == str(tiny_collection)
    assert Path(loaded.train.synthetic_queries) == out / "queries" / "queries.jsonl"
    assert loaded.synthetic.generator == "ict" and loaded.synthetic.per_doc == 2
    assert (loaded.teacher.kind, loaded.teacher.model) == ("cross_encoder", str(tiny_model))
    assert loaded.optim.epochs == 2
    assert loaded.eval.collections == [str(tiny_collection)]  # it has judged test queries
