"""A document adapter over the frozen index: it trains (at its own rate) while the document
transformer stays as it was, WiSE-FT scales its residual, and the recipe rules refuse what it
does not support."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer
from typer.testing import CliRunner

from twotower.cli.main import app
from twotower.errors import ConfigError
from twotower.models.adapter import adapters
from twotower.models.encoder import Encoder, load_sentence_transformer, route_modules
from twotower.training.recipe import load_recipe


def _recipe(tmp_path, model, collection, extra: str = "") -> str:
    text = f"""# frozen index with a document adapter
model: {{name: {model}, towers: separate, train_document_tower: false, document_adapter: true}}
train: {{data: {collection}, split: train}}
negatives: {{source: dense, count: 3, rank_window: [1, 6]}}
loss:
  - {{loss: contrastive, preset: mnrl}}
optim: {{batch_size: 2, epochs: 2, learning_rate: 1.0e-4, adapter_learning_rate: 1.0e-2,
        precision: fp32, save_steps: 100, wise_ft: 0.5}}
{extra}"""
    path = tmp_path / "adapter.yaml"
    path.write_text(text)
    return str(path)


def test_the_adapter_trains_over_the_frozen_index(tmp_path, tiny_model, train_collection):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", _recipe(tmp_path, tiny_model, train_collection), "--output-dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    base = SentenceTransformer(str(tiny_model), device="cpu")
    trained = load_sentence_transformer(str(out / "model"), device="cpu")
    route = route_modules(trained, "document")
    (head,) = adapters(route)
    assert head.residual_scale == pytest.approx(0.5), "WiSE-FT scales the adapter's residual"
    assert head.down.weight.abs().max() > 0, "the adapter must train"
    body = torch.cat([p.flatten() for m in route if m is not head for p in m.parameters()])
    assert torch.equal(body, torch.cat([p.flatten() for p in base.parameters()]))
    # Evaluation reads the base model's corpus entry and applies the trained adapter.
    assert Encoder(trained).fingerprint_for("document", adapted=False) == Encoder(
        base
    ).fingerprint_for("document")


def test_the_adapter_has_its_own_learning_rate(tiny_model):
    from twotower.models.build import build_model
    from twotower.training.trainer import _adapter_learning_rates

    model = build_model(str(tiny_model), towers="separate", document_adapter=True)
    ((pattern, rate),) = _adapter_learning_rates(model, 3e-3).items()
    import re

    matched = [n for n, _ in model.named_parameters() if re.search(pattern, "model." + n)]
    assert rate == 3e-3 and len(matched) == 4  # two linear layers, weight and bias
    assert _adapter_learning_rates(build_model(str(tiny_model), towers="separate"), 1e-3) == {}


def test_recipes_the_adapter_cannot_serve_are_refused(tmp_path, tiny_model, train_collection):
    shared = tmp_path / "shared.yaml"
    shared.write_text(f"model: {{name: {tiny_model}, document_adapter: true}}\n")
    with pytest.raises(
        ConfigError, match="shared.yaml:1: .*document_adapter needs towers: separate"
    ):
        load_recipe(shared)
    path = _recipe(
        tmp_path, tiny_model, train_collection, "refresh: {mode: sync, every_steps: 2}\n"
    )
    with pytest.raises(ConfigError, match="without the document adapter"):
        load_recipe(path)
