"""Losses declared as data: spec parsing, error messages, weighted sums."""

from __future__ import annotations

import pytest
import torch
import yaml
from pydantic import ValidationError

from tests.losses._losses_batches import gradcheck_embeddings, make_batch
from tests.losses._losses_reference import ref_contrastive, ref_listwise, ref_margin_mse
from twotower.errors import ConfigError
from twotower.losses import (
    BatchLayout,
    CombinedLoss,
    ContrastiveLoss,
    ContrastiveSpec,
    MarginMSELoss,
    build_loss,
    parse_loss_specs,
)
from twotower.losses.spec import LossSpec

RECIPE = """
loss:
  - {loss: margin_mse, weight: 1, dual_weight: 0.5}
  - {loss: contrastive, directions: [q2d, d2q], weight: 0.5}
  - loss: contrastive
    groups:
      - {blocks: [q2d, q2q], weight: 1}
      - {blocks: [d2q, d2d], weight: 0.25}
    temperature: 0.1
    weight: 0.3
  - {loss: listwise_kl, weight: 0.7, contrastive_weight: 0.2}
"""


def test_recipe_builds_the_weighted_sum_of_its_terms():
    loss = build_loss(yaml.safe_load(RECIPE)["loss"])
    assert isinstance(loss, CombinedLoss)
    assert loss.weights == (1.0, 0.5, 0.3, 0.7)
    assert loss.term_names == ("margin_mse", "contrastive", "contrastive_2", "listwise_kl")
    b = make_batch(ids=True, ragged=True, teacher=True, seed=3)
    want = (
        1.0 * ref_margin_mse(b, dual_weight=0.5)
        + 0.5 * ref_contrastive(b, [(("q2d",), 1.0), (("d2q",), 1.0)])
        + 0.3 * ref_contrastive(b, [(("q2d", "q2q"), 1.0), (("d2q", "d2d"), 0.25)], tau=0.1)
        + 0.7 * ref_listwise(b, w_con=0.2)
    )
    assert loss(b).item() == pytest.approx(want, abs=1e-6)


def test_combined_gradcheck():
    loss = build_loss(yaml.safe_load(RECIPE)["loss"])
    base = make_batch(rows=4, dim=3, k=2, m=2, ids=True, ragged=True, teacher=True, seed=1)

    assert gradcheck_embeddings(loss, base)


def test_spec_union_is_importable_and_discriminated():
    from pydantic import TypeAdapter

    spec = TypeAdapter(LossSpec).validate_python({"loss": "contrastive", "preset": "samtone_both"})
    assert isinstance(spec, ContrastiveSpec)
    assert spec.model_dump()["temperature"] == 0.05
    # spec objects can be mixed with mappings
    loss = build_loss([spec, {"loss": "margin_mse"}])
    assert isinstance(loss.losses[0], ContrastiveLoss) and isinstance(loss.losses[1], MarginMSELoss)


def test_parsed_specs_are_frozen_and_dump_back_to_the_recipe_entries():
    entries = yaml.safe_load(RECIPE)["loss"]
    specs = parse_loss_specs(entries)
    assert [spec.loss for spec in specs] == [e["loss"] for e in entries]
    with pytest.raises(ValidationError):
        specs[0].weight = 2.0
    dumped = [spec.model_dump(exclude_defaults=True) for spec in specs]
    # Defaults (weight 1 of the entry and of a group) are left out; the rest is as written.
    assert dumped[0] == {"loss": "margin_mse", "dual_weight": 0.5}
    assert dumped[2] == {
        "loss": "contrastive",
        "groups": [{"blocks": ["q2d", "q2q"]}, {"blocks": ["d2q", "d2d"], "weight": 0.25}],
        "temperature": 0.1,
        "weight": 0.3,
    }
    assert parse_loss_specs(dumped) == specs
    b = make_batch(ids=True, ragged=True, teacher=True, seed=4)
    assert build_loss(specs)(b).item() == build_loss(entries)(b).item()


def test_single_mapping_is_accepted():
    assert len(build_loss({"loss": "contrastive"}).losses) == 1
    assert len(parse_loss_specs([{"loss": "listwise_kl"}])) == 1


@pytest.mark.parametrize(
    "specs, message",
    [
        (
            [{"loss": "contrastive", "temprature": 0.1}],
            "loss[0] (contrastive): unknown key 'temprature' (did you mean 'temperature'?)",
        ),
        (
            [{"loss": "margin_mse"}, {"loss": "margin_mse", "dual_wieght": 1}],
            "loss[1] (margin_mse): unknown key 'dual_wieght' (did you mean 'dual_weight'?)",
        ),
        (
            [{"loss": "margin_mes"}],
            "loss[0]: unknown loss 'margin_mes' (did you mean 'margin_mse'?)",
        ),
        ([{"weight": 1}], "loss[0]: missing key 'loss'"),
        (
            [{"loss": "contrastive", "groups": [{"blocks": ["q2d"], "wieght": 1}]}],
            "unknown key 'wieght' (did you mean 'weight'?)",
        ),
        (
            [{"loss": "contrastive", "directions": ["q2d", "d2p"]}],
            "loss[0] (contrastive): directions: unknown direction 'd2p' (did you mean 'd2q'?)",
        ),
        (
            [{"loss": "contrastive", "similarity": "cosin"}],
            "loss[0] (contrastive): similarity: 'cosin' is not valid (did you mean 'cosine'?)",
        ),
        (
            [{"loss": "margin_mse", "dual_negatives": "inbatch"}],
            "dual_negatives: 'inbatch' is not valid (did you mean 'in_batch'?)",
        ),
        (
            [{"loss": "contrastive", "temperature": "hot"}],
            "loss[0] (contrastive): temperature: Input should be a valid number",
        ),
        (
            [{"loss": "contrastive", "temperature": 0}],
            "loss[0] (contrastive): temperature: a temperature must be finite and > 0, got 0",
        ),
        ([{"loss": "contrastive", "weight": -1}], "loss[0].weight: must be >= 0, got -1"),
        ([{"loss": "contrastive", "weight": float("nan")}], "loss[0].weight: must be finite"),
        ([{"loss": "contrastive", "weight": 0}], "every term has weight 0"),
        (
            [{"loss": "contrastive", "preset": "gte", "directions": ["q2d"]}],
            "preset and directions: give only one way",
        ),
        (
            [{"loss": "contrastive", "preset": "gte"}],
            "preset: unknown preset 'gte' (did you mean 'gte_joint'?)",
        ),
        (
            [{"loss": "contrastive", "partition": "joint"}],
            "partition: only applies together with directions",
        ),
        (
            [{"loss": "listwise_kl", "near_top_ratio": 2}],
            "loss[0] (listwise_kl): near_top_ratio: must be in [0, 1]",
        ),
        ([], "loss: the list is empty"),
        ("contrastive", "loss: expected a list of loss entries, got str"),
        (["contrastive"], "loss[0]: expected a mapping with a 'loss' key"),
    ],
)
def test_spec_errors(specs, message):
    with pytest.raises(ConfigError) as e:
        build_loss(specs)
    assert message in str(e.value)


def test_layout_errors_name_the_entry():
    with pytest.raises(
        ConfigError, match=r"loss\[1\] \(margin_mse\): dual_weight: .*needs hard-negative queries"
    ):
        build_loss(
            [{"loss": "contrastive"}, {"loss": "margin_mse", "dual_weight": 0.1}],
            layout=BatchLayout(negative_queries=False),
        )
    build_loss(
        [{"loss": "margin_mse", "dual_weight": 0.1}], layout=BatchLayout(negative_queries=True)
    )


def test_combined_rejects_non_losses():
    with pytest.raises(ConfigError, match=r"loss\[0\]: expected an EmbeddingLoss, got Linear"):
        CombinedLoss([(1.0, torch.nn.Linear(2, 2))])
