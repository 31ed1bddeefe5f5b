"""Margin-MSE(-Dual) and listwise KL distillation against loop-based references, and gradcheck."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.losses._losses_batches import gradcheck_embeddings, make_batch
from tests.losses._losses_reference import ref_listwise, ref_margin_mse
from twotower.errors import ConfigError
from twotower.losses import BatchLayout, BatchShapeError, ListwiseKLLoss, MarginMSELoss

# ---------------------------------------------------------------- Margin-MSE
MMSE_CONFIGS = {
    "plain_dot": dict(),
    "plain_cosine": dict(similarity="cosine"),
    "dual_mined": dict(dual_weight=0.5),
    "dual_mined_cosine": dict(dual_weight=2.0, similarity="cosine"),
    "dual_in_batch": dict(dual_weight=0.7, dual_negatives="in_batch"),
}


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("ids", [False, True])
@pytest.mark.parametrize("config", list(MMSE_CONFIGS))
def test_margin_mse_matches_loop_reference(config, ids, ragged):
    loss = MarginMSELoss(**MMSE_CONFIGS[config])
    for seed in range(3):
        b = make_batch(seed=seed, ids=ids, ragged=ragged, teacher=True, pair_scores=True)
        if ragged:
            # padded slots may hold garbage teacher scores: they must not leak into the loss
            b.teacher_negative_scores = b.teacher_negative_scores.masked_fill(
                ~b.hard_negatives_mask, float("nan")
            )
        got = loss(b).item()
        want = ref_margin_mse(
            b,
            similarity=loss.similarity,
            dual_weight=loss.dual_weight,
            dual_negatives=loss.dual_negatives,
        )
        assert got == pytest.approx(want, abs=1e-6, rel=1e-6)


def test_margin_mse_distributed_rows():
    b = make_batch(rows=6, teacher=True, pair_scores=True, seed=5)
    loss = MarginMSELoss(dual_weight=1.0, dual_negatives="in_batch")
    local = dataclasses.replace(b, anchor_offset=2, num_anchors=3)
    assert loss(local).item() == pytest.approx(
        ref_margin_mse(local, dual_weight=1.0, dual_negatives="in_batch"), abs=1e-6
    )


@pytest.mark.parametrize("config", list(MMSE_CONFIGS))
def test_margin_mse_gradcheck(config):
    loss = MarginMSELoss(**MMSE_CONFIGS[config])
    base = make_batch(
        rows=4, dim=3, k=2, m=2, ragged=True, ids=True, teacher=True, pair_scores=True, seed=1
    )

    assert gradcheck_embeddings(loss, base)


def test_margin_mse_teacher_scores_get_no_gradient():
    b = make_batch(teacher=True, requires_grad=True)
    b.teacher_negative_scores.requires_grad_(True)
    MarginMSELoss()(b).backward()
    assert b.teacher_negative_scores.grad is None


@pytest.mark.parametrize(
    "kwargs, layout, message",
    [
        (dict(dual_weight=-0.1), None, "dual_weight: must be >= 0, got -0.1"),
        (dict(dual_weight=float("inf")), None, "dual_weight: must be finite"),
        (
            dict(dual_negatives="mind"),
            None,
            "dual_negatives: must be one of ['mined', 'in_batch'], got 'mind'",
        ),
        (dict(similarity="l2"), None, "similarity: unknown similarity 'l2'"),
        (
            dict(dual_weight=0.1),
            BatchLayout(negative_queries=False),
            "dual_weight: the dual term with dual_negatives='mined' needs hard-negative queries",
        ),
        (dict(), BatchLayout(hard_negatives=False), "margin_mse: needs hard-negative documents"),
        (dict(), BatchLayout(teacher_scores=False), "margin_mse: needs teacher scores"),
        (
            dict(dual_weight=0.1, dual_negatives="in_batch"),
            BatchLayout(document_anchors=False),
            "no document-side anchors",
        ),
    ],
)
def test_margin_mse_invalid_configuration(kwargs, layout, message):
    with pytest.raises(ConfigError) as e:
        MarginMSELoss(**kwargs, layout=layout)
    assert message in str(e.value)


def test_margin_mse_missing_teacher_is_a_clear_runtime_error():
    with pytest.raises(
        BatchShapeError, match="margin_mse: batch.teacher_positive_scores is required"
    ):
        MarginMSELoss()(make_batch())
    with pytest.raises(BatchShapeError, match=r"teacher_negative_scores must have shape \(5, 3\)"):
        MarginMSELoss()(
            dataclasses.replace(make_batch(teacher=True), teacher_negative_scores=torch.zeros(5, 2))
        )
    with pytest.raises(BatchShapeError, match="teacher_pair_scores"):
        MarginMSELoss(dual_weight=1, dual_negatives="in_batch")(make_batch(teacher=True))


# ---------------------------------------------------------------- listwise KL
LIST_CONFIGS = {
    "kl_only": dict(contrastive_weight=0.0),
    "paper_defaults": dict(),
    "no_near_top_mask": dict(near_top_ratio=None, contrastive_weight=0.5),
    "dot_t2": dict(
        similarity="dot",
        student_temperature=2.0,
        teacher_temperature=0.7,
        temperature_squared_scaling=True,
        contrastive_temperature=3.0,
    ),
}


@pytest.mark.parametrize("source", ["candidates", "hard_negatives"])
@pytest.mark.parametrize("ragged_ids", [False, True])
@pytest.mark.parametrize("config", list(LIST_CONFIGS))
def test_listwise_matches_loop_reference(config, ragged_ids, source):
    loss = ListwiseKLLoss(**LIST_CONFIGS[config])
    for seed in range(3):
        if source == "candidates":
            b = make_batch(
                k=0, m=0, p=4, teacher=True, ragged=ragged_ids, ids=ragged_ids, seed=seed
            )
            if ragged_ids:
                b.candidate_ids[1] = b.candidate_ids[0]  # shared candidates across rows: duplicates
        else:
            b = make_batch(k=3, m=0, teacher=True, ragged=ragged_ids, ids=ragged_ids, seed=seed)
        got = loss(b).item()
        want = ref_listwise(
            b,
            ts=loss.student_temperature,
            tt=loss.teacher_temperature,
            w_con=loss.contrastive_weight,
            tau=loss.contrastive_temperature,
            ratio=loss.near_top_ratio,
            similarity=loss.similarity,
            t2=loss.temperature_squared_scaling,
        )
        assert got == pytest.approx(want, abs=1e-6, rel=1e-6)


def test_listwise_nonfinite_teacher_marks_absent_slot():
    b = make_batch(k=0, m=0, p=4, teacher=True, seed=3)
    b.candidate_teacher_scores[2, 3] = float("-inf")
    b.candidate_teacher_scores[4, 1] = float("nan")
    loss = ListwiseKLLoss()
    assert loss(b).item() == pytest.approx(ref_listwise(b), abs=1e-6)


def test_listwise_near_top_mask_matters():
    b = make_batch(k=0, m=0, p=5, teacher=True, seed=7)
    b.candidate_teacher_scores[:, 1] = b.candidate_teacher_scores.max(1).values * 0.95
    with_mask = ListwiseKLLoss(contrastive_weight=1.0)(b).item()
    without = ListwiseKLLoss(contrastive_weight=1.0, near_top_ratio=None)(b).item()
    assert with_mask < without


@pytest.mark.parametrize("config", list(LIST_CONFIGS))
def test_listwise_gradcheck(config):
    loss = ListwiseKLLoss(
        **{**LIST_CONFIGS[config], "contrastive_temperature": 0.5, "student_temperature": 0.5}
    )
    base = make_batch(rows=4, dim=3, k=0, m=0, p=3, ragged=True, ids=True, teacher=True, seed=2)

    def f(q, c):
        return loss(dataclasses.replace(base, queries=q, candidates=c))

    inputs = (
        base.queries.detach().clone().requires_grad_(True),
        base.candidates.detach().clone().requires_grad_(True),
    )
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(student_temperature=0),
            "student_temperature: a temperature must be finite and > 0, got 0",
        ),
        (dict(teacher_temperature=-1), "teacher_temperature: a temperature must be finite and > 0"),
        (
            dict(contrastive_temperature=float("nan")),
            "contrastive_temperature: a temperature must be finite",
        ),
        (dict(contrastive_weight=-0.1), "contrastive_weight: must be >= 0"),
        (dict(near_top_ratio=1.5), "near_top_ratio: must be in [0, 1]"),
    ],
)
def test_listwise_invalid_configuration(kwargs, message):
    with pytest.raises(ConfigError) as e:
        ListwiseKLLoss(**kwargs)
    assert message in str(e.value)


def test_listwise_layout_and_runtime_errors():
    with pytest.raises(ConfigError, match="listwise_kl: a softmax over one candidate is constant"):
        ListwiseKLLoss(layout=BatchLayout(hard_negatives=False, listwise_candidates=False))
    with pytest.raises(BatchShapeError, match="listwise_kl: give batch.candidates"):
        ListwiseKLLoss()(make_batch())
    with pytest.raises(BatchShapeError, match=r"candidate_teacher_scores must have shape \(5, 4\)"):
        b = make_batch(k=0, m=0, p=4, teacher=True)
        ListwiseKLLoss()(dataclasses.replace(b, candidate_teacher_scores=torch.zeros(5, 3)))


def test_listwise_row_without_candidates_is_left_out():
    b = make_batch(k=0, m=0, p=3, teacher=True, seed=8, requires_grad=True)
    b.candidate_teacher_scores[1] = float("nan")  # row 1: no real candidate
    value = ListwiseKLLoss()(b)
    assert value.item() == pytest.approx(ref_listwise(b), abs=1e-6)
    value.backward()
    assert torch.isfinite(b.queries.grad).all() and torch.isfinite(b.candidates.grad).all()
