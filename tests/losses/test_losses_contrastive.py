"""ContrastiveLoss against a loop-based transcription of its formulas, and gradcheck."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.losses._losses_batches import gradcheck_embeddings, make_batch
from tests.losses._losses_reference import ref_contrastive
from twotower.errors import ConfigError
from twotower.losses import BatchLayout, ContrastiveLoss, SoftmaxGroup, preset_groups

CONFIGS = {
    "mnrl": dict(preset="mnrl"),
    "mnrl_dual": dict(preset="mnrl_dual", dual_weight=0.3),
    "samtone_query": dict(preset="samtone_query"),
    "samtone_both": dict(preset="samtone_both"),
    "gte_joint": dict(preset="gte_joint"),
    "joint_q2d_d2q": dict(directions=["q2d", "d2q"], partition="joint"),
    "custom_groups": dict(
        groups=[SoftmaxGroup(("q2d", "q2q"), 0.7), SoftmaxGroup(("d2d", "d2q"), 0.4)]
    ),
}

VARIANTS = {
    # name: (batch kwargs, loss kwargs, anchor rows)
    "plain": (dict(), dict(), None),
    "ids_ragged": (dict(ids=True, ragged=True), dict(), None),
    "ids_unmasked": (dict(ids=True, ragged=True), dict(mask_false_negatives=False), None),
    "own_negatives_dot": (
        dict(ids=True, ragged=True),
        dict(share_hard_negatives=False, similarity="dot", temperature=3.0),
        None,
    ),
    "shared_queries_d2d_own": (
        dict(ids=True, ragged=True),
        dict(share_negative_queries=True, d2d_own_hard_negatives=True),
        None,
    ),
    "own_d2d_own": (
        dict(ids=True),
        dict(share_hard_negatives=False, d2d_own_hard_negatives=True),
        None,
    ),
    "no_negatives": (dict(k=0, m=0, ids=True), dict(), None),
    "distributed_rows": (dict(rows=7, ids=True, ragged=True), dict(), (2, 3)),
}


def _groups(loss: ContrastiveLoss):
    return [(g.blocks, g.weight) for g in loss.groups]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_loop_reference(config, variant):
    batch_kw, loss_kw, anchors = VARIANTS[variant]
    if not any("d2d" in g[0] for g in _groups(ContrastiveLoss(**CONFIGS[config]))):
        loss_kw = {k: v for k, v in loss_kw.items() if k != "d2d_own_hard_negatives"}
    loss = ContrastiveLoss(**CONFIGS[config], **loss_kw)
    for seed in range(3):
        b = make_batch(seed=seed, **batch_kw)
        if anchors is not None:
            b.anchor_offset, b.num_anchors = anchors
        got = loss.compute_loss_from_batch(b).item()
        want = ref_contrastive(
            b,
            _groups(loss),
            tau=loss.temperature,
            similarity=loss.similarity,
            share_hn=loss.share_hard_negatives,
            share_nq=loss.share_negative_queries,
            d2d_own=loss.d2d_own_hard_negatives,
            mask_fn=loss.mask_false_negatives,
        )
        assert got == pytest.approx(want, abs=1e-6, rel=1e-6), (config, variant, seed)


def test_masking_changes_the_value():
    """Sanity: the id batches really exercise masking (otherwise the reference test proves little)."""
    b = make_batch(ids=True, ragged=True, seed=1)
    masked = ContrastiveLoss(preset="gte_joint")(b).item()
    unmasked = ContrastiveLoss(preset="gte_joint", mask_false_negatives=False)(b).item()
    assert masked != pytest.approx(unmasked)


def test_duplicate_positive_is_not_a_negative():
    # Row 1's positive is the same document as row 0's: for q_0 it must not count as a negative.
    b = make_batch(rows=3, k=0, m=0)
    b.positives = torch.stack([b.positives[0], b.positives[0], b.positives[2]])
    b.positive_ids = torch.tensor([10, 10, 11])
    loss = ContrastiveLoss(preset="mnrl")
    masked = loss(b).item()
    # Equivalent batch without the duplicate column for q_0 / q_1: compute by hand.
    q = torch.nn.functional.normalize(b.queries, dim=-1)
    d = torch.nn.functional.normalize(b.positives, dim=-1)
    s = q @ d.T / 0.05
    per_row = [
        torch.logsumexp(s[0, [0, 2]], 0) - s[0, 0],
        torch.logsumexp(s[1, [1, 2]], 0) - s[1, 1],
        torch.logsumexp(s[2, [0, 2]], 0) - s[2, 2],  # the two copies of doc 10 count once
    ]
    assert masked == pytest.approx(torch.stack(per_row).mean().item(), abs=1e-9)


def test_local_anchors_equal_full_batch_rows():
    """Distributed layout: the loss on anchors 2:5 of a gathered batch is the mean of those rows'
    terms in the full-batch loss (same candidates)."""
    b = make_batch(rows=6, ids=True, ragged=True, seed=4)
    loss = ContrastiveLoss(preset="samtone_both")
    parts = []
    for start in range(0, 6, 3):
        local = dataclasses.replace(b, anchor_offset=start, num_anchors=3)
        parts.append(loss(local))
    assert torch.stack(parts).mean().item() == pytest.approx(loss(b).item(), abs=1e-9)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_gradcheck(config):
    loss = ContrastiveLoss(**CONFIGS[config], temperature=0.5)
    base = make_batch(rows=4, dim=3, k=2, m=2, ids=True, ragged=True, seed=2)

    assert gradcheck_embeddings(loss, base)


def test_gradcheck_own_negatives_dot():
    loss = ContrastiveLoss(
        preset="gte_joint",
        share_hard_negatives=False,
        d2d_own_hard_negatives=True,
        similarity="dot",
        temperature=2.0,
    )
    base = make_batch(rows=4, dim=3, k=2, m=2, ids=True, seed=3)

    assert gradcheck_embeddings(loss, base)


def test_float32_and_no_grad_inputs():
    b = make_batch(rows=8, dim=16, ids=True, ragged=True)
    b = dataclasses.replace(
        b,
        queries=b.queries.float(),
        positives=b.positives.float(),
        hard_negatives=b.hard_negatives.float(),
        negative_queries=b.negative_queries.float(),
    )
    assert torch.isfinite(ContrastiveLoss(preset="gte_joint")(b))


# ---------------------------------------------------------------- construction-time validation
def test_presets_are_the_documented_groups():
    assert [(g.blocks, g.weight) for g in preset_groups("samtone_both", 0.5)] == [
        (("q2d", "q2q"), 1.0),
        (("d2q", "d2d"), 0.5),
    ]
    assert [(g.blocks, g.weight) for g in preset_groups("mnrl_dual", 0.1)] == [
        (("q2d",), 1.0),
        (("d2q",), 0.1),
    ]
    assert [g.blocks for g in preset_groups("gte_joint")] == [("q2d", "q2q", "d2q", "d2d")]


def test_st_direction_names_are_accepted():
    loss = ContrastiveLoss(directions=["query_to_doc", "doc_to_query"])
    assert [g.blocks for g in loss.groups] == [("q2d",), ("d2q",)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(directions=["q2d", "d2qq"]),
            "directions: unknown direction 'd2qq' (did you mean 'd2q'?)",
        ),
        (dict(directions=["q2d", "query_to_dok"]), "did you mean 'query_to_doc'?"),
        (dict(preset="samtone"), "preset: unknown preset 'samtone' (did you mean 'samtone_both'?)"),
        (dict(temperature=0), "temperature: a temperature must be finite and > 0, got 0"),
        (dict(temperature=-0.1), "temperature: a temperature must be finite and > 0"),
        (dict(temperature=float("inf")), "temperature: a temperature must be finite and > 0"),
        (dict(dual_weight=float("nan")), "dual_weight: must be finite"),
        (dict(dual_weight=-1), "dual_weight: must be >= 0, got -1"),
        (dict(groups=[(("q2d",), -0.5)]), "groups[0].weight: must be >= 0"),
        (dict(groups=[(("q2d",), 0.0)]), "every softmax group has weight 0"),
        (dict(groups=[]), "groups: at least one softmax group is required"),
        (dict(groups=[(("q2d", "q2d"), 1.0)]), "groups[0].blocks: a block is listed twice"),
        (dict(directions=[]), "directions: at least one direction is required"),
        (dict(directions=["q2d", "q2d"]), "directions: ['q2d'] listed more than once"),
        (dict(directions=["q2d", "d2d"]), "document-side softmax has neither q2d nor d2q"),
        (dict(directions=["q2q"], partition="joint"), "has neither q2d nor d2q"),
        (dict(directions=["q2d"], partition="separate"), "partition: unknown value 'separate'"),
        (dict(preset="mnrl", directions=["q2d"]), "preset and directions: give only one way"),
        (dict(similarity="cos"), "similarity: unknown similarity 'cos'"),
        (
            dict(preset="mnrl", d2d_own_hard_negatives=True, layout=BatchLayout()),
            "d2d_own_hard_negatives: set, but no d2d block",
        ),
    ],
)
def test_invalid_configuration(kwargs, message):
    with pytest.raises(ConfigError) as e:
        ContrastiveLoss(**kwargs)
    assert message in str(e.value)


def test_document_blocks_need_document_anchors():
    with pytest.raises(
        ConfigError,
        match=r"directions: \['d2q', 'd2d'\] anchor a softmax on documents.*document_anchors=False",
    ):
        ContrastiveLoss(preset="samtone_both", layout=BatchLayout(document_anchors=False))
    ContrastiveLoss(preset="samtone_query", layout=BatchLayout(document_anchors=False))  # fine


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(positives=torch.zeros(4, 6)), "positives must have shape (5, 6), got (4, 6)"),
        (
            dict(hard_negatives=torch.zeros(5, 3, 7)),
            "hard_negatives must be 3-D with leading dims (5,) and last dim 6",
        ),
        (
            dict(hard_negatives_mask=torch.ones(5, 2, dtype=torch.bool)),
            "hard_negatives_mask must have shape (5, 3)",
        ),
        (dict(hard_negatives_mask=torch.ones(5, 3)), "hard_negatives_mask must be a bool tensor"),
        (dict(positive_ids=torch.zeros(5)), "positive_ids must be an integer tensor"),
        (dict(query_ids=torch.zeros(3, dtype=torch.long)), "query_ids must have shape (5,)"),
        (dict(anchor_offset=4, num_anchors=3), "anchor rows 4:7"),
        (dict(queries=torch.zeros(5, 6, 1)), "queries must be (R, D)"),
    ],
)
def test_runtime_shape_errors(change, message):
    b = dataclasses.replace(make_batch(), **change)
    with pytest.raises(ValueError) as e:
        ContrastiveLoss(preset="gte_joint")(b)
    assert message in str(e.value)


@pytest.mark.parametrize("preset", ["mnrl", "mnrl_dual"])
def test_without_in_batch_negatives_only_the_own_positive_and_hard_negatives_remain(preset):
    """ANCE's objective: the positive against the row's own hard negative, nothing else."""
    from twotower.losses import EmbeddingBatch

    torch.manual_seed(0)
    q, p, h, nq = (torch.randn(3, 6, dtype=torch.float64) for _ in range(4))
    batch = EmbeddingBatch(
        queries=q, positives=p, hard_negatives=h.unsqueeze(1), negative_queries=nq.unsqueeze(1)
    )
    loss = ContrastiveLoss(
        preset=preset,
        dual_weight=0.1,
        share_hard_negatives=False,
        in_batch_negatives=False,
        temperature=0.05,
    )

    def pair(anchor, positive, negative):
        cos = torch.nn.functional.cosine_similarity
        pos, neg = cos(anchor, positive, dim=-1) / 0.05, cos(anchor, negative, dim=-1) / 0.05
        return (torch.logsumexp(torch.stack([pos, neg]), 0) - pos).mean()

    expected = pair(q, p, h)
    if preset == "mnrl_dual":
        expected = expected + 0.1 * pair(p, q, nq)
    assert loss.compute_loss_from_batch(batch).item() == pytest.approx(expected.item())
    with_batch = ContrastiveLoss(preset=preset, dual_weight=0.1, share_hard_negatives=False)
    assert with_batch.compute_loss_from_batch(batch).item() > expected.item()
