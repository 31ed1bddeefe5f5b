"""Nothing a user passes in runs code: YAML is read with the safe loader, cached arrays and
checkpoints are never unpickled, and no model's own code runs unless the user asks for it."""

from __future__ import annotations

import hashlib
import json
import pathlib
import pickle
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.training import test_train
from twotower.cli.main import app
from twotower.errors import ConfigError
from twotower.training.recipe import load_recipe


class Payload:
    """Unpickling this creates ``marker``: proof that a load ran code from the file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# --- YAML ---------------------------------------------------------------------------------------

TAG = "!!python/object/apply:pathlib.Path.touch"


def test_a_recipe_with_a_python_tag_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f"description: fine\nname: {TAG} ['{marker}']\n")
    with pytest.raises(ConfigError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:2: invalid YAML (could not determine a constructor")
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert len(error_lines(result.output)) == 1
    assert not marker.exists()


def test_an_override_with_a_python_tag_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "fine.yaml"
    path.write_text("name: fine\n")
    override = f"name={TAG} ['{marker}']"
    with pytest.raises(ConfigError, match=r"^--set .*: invalid YAML value \(could not determine"):
        load_recipe(path, [override])
    result = CliRunner().invoke(app, ["train", str(path), "--set", override])
    assert result.exit_code == 2 and len(error_lines(result.output)) == 1
    assert not marker.exists()


def test_an_override_that_is_not_yaml_is_one_line(tmp_path):
    path = tmp_path / "fine.yaml"
    path.write_text("name: fine\n")
    with pytest.raises(ConfigError, match=r"^--set 'name=\[': invalid YAML value"):
        load_recipe(path, ["name=["])


# --- arrays and checkpoints ---------------------------------------------------------------------


def test_an_embedding_cache_entry_holding_pickled_objects_is_refused(tmp_path, tiny_model):
    from twotower.models.embedding_cache import cache_path, encode_cached
    from twotower.models.encoder import Encoder

    encoder = Encoder.from_name(str(tiny_model), device="cpu", show_progress=False)
    texts = ["cats sleep", "dogs bark"]
    genuine, cached = encode_cached(encoder, texts, "document", "k")
    assert not cached
    entry = cache_path(encoder, "document", "k")
    checksum = entry.with_name(entry.name + ".sha256")
    assert checksum.read_text().strip() == hashlib.sha256(entry.read_bytes()).hexdigest()

    # The entry replaced by pickled objects with a checksum that matches: only np.load decides.
    marker = tmp_path / "ran"
    np.save(entry, np.array([Payload(marker)] * 2, dtype=object), allow_pickle=True)
    checksum.write_text(hashlib.sha256(entry.read_bytes()).hexdigest() + "\n")
    evil = tmp_path / "evil.npy"
    shutil.copy(entry, evil)

    again, cached = encode_cached(encoder, texts, "document", "k")
    assert not cached and not marker.exists()
    assert np.array_equal(again, genuine)
    # The payload is live: loading it with pickles allowed would have run it.
    np.load(evil, allow_pickle=True)
    assert marker.exists()


def test_resuming_from_a_checkpoint_holding_a_pickle_runs_none_of_it(
    tmp_path, tiny_model, train_collection
):
    path = test_train.recipe(tmp_path, tiny_model, train_collection)
    out = tmp_path / "run"
    first = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(out)])
    assert first.exit_code == 0, first.output
    shutil.rmtree(out / "model")
    shutil.rmtree(out / "checkpoints" / "checkpoint-2")
    checkpoint = out / "checkpoints" / "checkpoint-1"
    marker = tmp_path / "ran"
    (checkpoint / "optimizer.pt").write_bytes(pickle.dumps(Payload(marker)))

    resumed = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(out), "--resume"])
    assert resumed.exit_code == 2, resumed.output
    assert not marker.exists()
    (line,) = error_lines(resumed.output)
    assert line.startswith(
        f"error: {checkpoint}: a file of this checkpoint holds more than tensors"
    )


# --- remote code ------------------------------------------------------------------------------


class Recorded(Exception):
    """Raised by a stand-in constructor once it has recorded its arguments."""


def recorder(calls: list[dict]):
    def construct(*args, **kwargs):
        calls.append(kwargs)
        raise Recorded

    return construct


def test_the_encoder_runs_no_remote_code_by_default(monkeypatch, tiny_model):
    import sentence_transformers

    from twotower.models.build import build_model
    from twotower.models.encoder import Encoder

    calls: list[dict] = []
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", recorder(calls))
    with pytest.raises(Recorded):
        build_model(str(tiny_model))  # the model a recipe trains
    with pytest.raises(Recorded):
        Encoder.from_name(str(tiny_model))  # the model an evaluation encodes with
    assert [call["trust_remote_code"] for call in calls] == [False, False]


def test_the_cross_encoder_teacher_runs_no_remote_code_by_default(monkeypatch, tiny_model):
    import sentence_transformers

    from twotower.teachers.spec import build_teacher

    calls: list[dict] = []
    monkeypatch.setattr(sentence_transformers, "CrossEncoder", recorder(calls))
    with pytest.raises(Recorded):
        build_teacher("cross_encoder", str(tiny_model))  # as a recipe's teacher.kind
    assert [call["trust_remote_code"] for call in calls] == [False]


def test_the_generator_runs_no_remote_code_by_default(monkeypatch, tmp_path):
    import transformers

    from twotower.generation.spec import build_generator

    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    calls: dict[str, dict] = {}

    class Config:
        model_type = "llama"
        architectures = ["LlamaForCausalLM"]

    class Tokenizer:
        pad_token = eos_token = "</s>"
        chat_template = None

    class Model:
        def to(self, device):  # the model is loaded last: every call is recorded by now
            raise Recorded

    def loader(name, made):
        def from_pretrained(source, **kwargs):
            calls[name] = kwargs
            return made()

        return type(name, (), {"from_pretrained": staticmethod(from_pretrained)})

    monkeypatch.setattr(transformers, "AutoConfig", loader("config", Config))
    monkeypatch.setattr(transformers, "AutoTokenizer", loader("tokenizer", Tokenizer))
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", loader("model", Model))
    with pytest.raises(Recorded):
        build_generator(str(folder), device="cpu")
    assert {name: kwargs["trust_remote_code"] for name, kwargs in calls.items()} == {
        "config": False,
        "tokenizer": False,
        "model": False,
    }
