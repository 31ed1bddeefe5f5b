"""Gradient caching: the cached loss gives the full batch's value and parameter gradients."""

from __future__ import annotations

import pytest
import torch

from tests.losses.test_losses_sentence_transformers import features, model  # noqa: F401 (model: a fixture)
from twotower.errors import ConfigError
from twotower.losses import CachedSentenceTransformerLoss, SentenceTransformerLoss

CASES = [
    # (loss specs, columns, labels, extra kwargs)
    (
        [{"loss": "contrastive", "preset": "mnrl"}],
        ["anchor", "positive", "negative_1", "negative_2"],
        None,
        {},
    ),
    (
        [{"loss": "contrastive", "preset": "samtone_both"}],
        ["anchor", "positive", "negative_1"],
        None,
        {},
    ),
    (
        [
            {"loss": "margin_mse", "dual_weight": 0.5},
            {"loss": "contrastive", "preset": "mnrl_dual", "weight": 0.5},
        ],
        ["anchor", "positive", "negative_1", "neg_query"],
        "scores",
        {"num_negative_query_columns": 1},
    ),
]


def value_and_grads(loss, st_model, columns, labels):
    st_model.zero_grad()
    value = loss(features(st_model, columns), labels)
    value.backward()
    grads = {
        name: p.grad.detach().clone()
        for name, p in st_model.named_parameters()
        if p.grad is not None
    }
    st_model.zero_grad()
    return value.item(), grads


@pytest.mark.parametrize("mini_batch_size", [1, 3])
@pytest.mark.parametrize(("specs", "columns", "labels", "kwargs"), CASES)
def test_same_value_and_gradients_as_the_full_batch(
    model,  # noqa: F811 (the fixture imported above)
    specs,
    columns,
    labels,
    kwargs,
    mini_batch_size,
):
    torch.manual_seed(0)
    scores = torch.rand(4, len(columns) - 1) if labels else None
    full = SentenceTransformerLoss(model, specs, **kwargs)
    cached = CachedSentenceTransformerLoss(model, specs, mini_batch_size=mini_batch_size, **kwargs)
    value, grads = value_and_grads(full, model, columns, scores)
    cached_value, cached_grads = value_and_grads(cached, model, columns, scores)
    assert cached_value == pytest.approx(value, rel=1e-5)
    assert grads.keys() == cached_grads.keys() and grads
    # float32: mini-batches pad to other widths, so sums run in another order; tolerances are
    # relative to the largest gradient (some, like attention key biases, are zero up to noise).
    scale = max(g.abs().max().item() for g in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(
            cached_grads[name],
            grad,
            rtol=1e-4,
            atol=1e-4 * scale,
            msg=lambda m, n=name: f"{n}: {m}",
        )


def test_dropout_is_replayed(model):  # noqa: F811
    """In train mode both passes draw the same dropout masks, so the gradients are still exact
    for the loss value the first pass computed (compared with a finite difference would be
    noisy; instead: two identical cached steps from one seed agree)."""
    cached = CachedSentenceTransformerLoss(
        model, [{"loss": "contrastive", "preset": "mnrl"}], mini_batch_size=2
    )
    model.train()
    try:
        runs = []
        for _ in range(2):
            torch.manual_seed(7)
            runs.append(value_and_grads(cached, model, ["anchor", "positive"], None))
    finally:
        model.eval()
    assert runs[0][0] == runs[1][0]
    for name, grad in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], grad)


def test_arguments_are_checked(model):  # noqa: F811
    with pytest.raises(ConfigError, match="mini_batch_size: must be an integer >= 1"):
        CachedSentenceTransformerLoss(model, [{"loss": "contrastive"}], mini_batch_size=0)
    with pytest.raises(ConfigError, match="mini_batch_num_tokens"):
        CachedSentenceTransformerLoss(model, [{"loss": "contrastive"}], mini_batch_num_tokens=-1)
    loss = CachedSentenceTransformerLoss(model, [{"loss": "contrastive"}], mini_batch_size=8)
    assert (
        loss.get_config_dict()["mini_batch_size"] == 8
        and "Scaling Deep Contrastive Learning" in loss.citation
    )
