"""A loss called on an empty block (no hard negatives, no negative queries, no candidates) says so
instead of returning NaN; the contrastive loss, whose softmax always holds the positive, stays
finite on empty blocks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.losses._losses_batches import make_batch
from twotower.losses import (
    PRESETS,
    BatchShapeError,
    CombinedLoss,
    ContrastiveLoss,
    ListwiseKLLoss,
    MarginMSELoss,
)


def without_hard_negatives(batch):
    return dataclasses.replace(
        batch,
        hard_negatives=batch.hard_negatives[:, :0],
        teacher_negative_scores=batch.teacher_negative_scores[:, :0],
    )


def test_margin_mse_without_hard_negatives_raises():
    batch = without_hard_negatives(make_batch(k=3, m=0, teacher=True))
    with pytest.raises(ValueError, match=r"margin_mse: batch.hard_negatives is empty \(K = 0\)"):
        MarginMSELoss()(batch)


def test_mined_dual_margin_mse_without_negative_queries_raises():
    batch = make_batch(k=2, m=2, teacher=True)
    batch = dataclasses.replace(
        batch,
        negative_queries=batch.negative_queries[:, :0],
        teacher_negative_query_scores=batch.teacher_negative_query_scores[:, :0],
    )
    with pytest.raises(
        BatchShapeError, match=r"margin_mse dual \(mined\): batch.negative_queries is empty"
    ):
        MarginMSELoss(dual_weight=0.5)(batch)


@pytest.mark.parametrize("contrastive_weight", [0.0, 0.1])
def test_listwise_without_candidates_raises(contrastive_weight):
    batch = make_batch(k=2, m=0, p=3, teacher=True)
    batch = dataclasses.replace(
        batch,
        candidates=batch.candidates[:, :0],
        candidate_teacher_scores=batch.candidate_teacher_scores[:, :0],
    )
    with pytest.raises(ValueError, match=r"listwise_kl: batch.candidates is empty \(P = 0\)"):
        ListwiseKLLoss(contrastive_weight=contrastive_weight)(batch)


def test_combined_loss_passes_the_term_error_on():
    batch = without_hard_negatives(make_batch(k=3, m=0, teacher=True))
    loss = CombinedLoss([(1.0, ContrastiveLoss(preset="mnrl")), (1.0, MarginMSELoss())])
    with pytest.raises(ValueError, match="margin_mse: batch.hard_negatives is empty"):
        loss(batch)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("in_batch_negatives", [True, False])
def test_contrastive_stays_finite_on_empty_blocks(preset, in_batch_negatives):
    batch = make_batch(k=2, m=2)
    batch = dataclasses.replace(
        batch,
        hard_negatives=batch.hard_negatives[:, :0],
        negative_queries=batch.negative_queries[:, :0],
    )
    value = ContrastiveLoss(preset=preset, in_batch_negatives=in_batch_negatives)(batch)
    assert torch.isfinite(value)


def test_combined_loss_records_each_term():
    batch = make_batch(k=2, m=0, teacher=True)
    contrastive, margin = ContrastiveLoss(preset="mnrl"), MarginMSELoss()
    loss = CombinedLoss([(0.5, contrastive), (2.0, margin), (1.0, ContrastiveLoss(preset="mnrl"))])
    total = loss(batch)
    assert list(loss.last_terms) == ["contrastive", "margin_mse", "contrastive_2"]
    assert torch.equal(loss.last_terms["margin_mse"], margin(batch).detach())
    expected = 0.5 * contrastive(batch) + 2.0 * margin(batch) + contrastive(batch)
    assert torch.allclose(total, expected)
