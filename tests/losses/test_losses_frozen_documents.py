"""FrozenDocumentsLoss: documents looked up by row, ids masking copies, gradients to queries only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.losses._losses_reference import ref_contrastive
from twotower.errors import ConfigError
from twotower.losses import BatchShapeError, EmbeddingBatch
from twotower.losses.frozen_documents import DOCUMENT_ROWS, FrozenDocumentsLoss, label_rows
from twotower.losses.st_loss import TEACHER_SCORES


class QueryTower(nn.Module):
    """A sentence-transformers-shaped model: features in, ``sentence_embedding`` out."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3, dtype=torch.float64)

    def forward(self, features: dict) -> dict:
        return {"sentence_embedding": self.linear(features["x"])}


def test_label_rows_pad_and_truncate():
    assert label_rows(7, [1, 2, 3], [7, 9], k=2, width=3) == [7, 1, 2, 7, 9, -1]
    assert label_rows(7, [], [], k=2, width=1) == [7, -1, -1, -1]


def test_value_is_the_loss_on_the_looked_up_rows_with_rows_as_ids():
    g = torch.Generator().manual_seed(0)
    documents = torch.randn(6, 3, generator=g, dtype=torch.float64)
    model = QueryTower()
    loss = FrozenDocumentsLoss(
        model,
        documents,
        [{"loss": "contrastive", "preset": "mnrl_dual", "dual_weight": 0.5}],
        num_negatives=2,
        num_positive_ids=2,
    )
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    # Row 1's negative 0 is row 0's positive, and row 2 knows document 4 as a second positive.
    labels = torch.tensor(
        [
            label_rows(0, [3, 5], [0], k=2, width=2),
            label_rows(1, [0], [1], k=2, width=2),
            label_rows(2, [4, 5], [2, 4], k=2, width=2),
        ]
    )
    value = loss([{"x": x}], labels)
    queries = model({"x": x})["sentence_embedding"].detach()
    hard = labels[:, 1:3]
    want = ref_contrastive(
        EmbeddingBatch(
            queries=queries,
            positives=documents[labels[:, 0]],
            hard_negatives=documents[hard.clamp(min=0)],
            hard_negatives_mask=hard >= 0,
            positive_ids=labels[:, 0],
            hard_negative_ids=hard,
            query_positive_ids=labels[:, 3:],
        ),
        [(("q2d",), 1.0), (("d2q",), 0.5)],
    )
    assert value.item() == pytest.approx(want, abs=1e-9)
    value.backward()
    assert model.linear.weight.grad is not None and model.linear.weight.grad.abs().sum() > 0
    assert not loss.documents.requires_grad


def test_labels_must_fit_the_declared_row_width():
    loss = FrozenDocumentsLoss(
        QueryTower(),
        torch.zeros(4, 3, dtype=torch.float64),
        [{"loss": "contrastive"}],
        num_negatives=1,
        num_positive_ids=2,
    )
    with pytest.raises(BatchShapeError, match=r"labels must be \(batch, 4\) document rows"):
        loss.batch(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.long))


def test_listwise_distillation_over_the_looked_up_rows_with_teacher_scores():
    """A mapping label (document rows + teacher scores) feeds listwise KL over [positive, hard
    negatives]; a NaN score marks a padded slot, which takes no probability."""
    g = torch.Generator().manual_seed(1)
    documents = torch.nn.functional.normalize(torch.randn(6, 3, generator=g), dim=-1)
    model = QueryTower().float()
    spec = [{"loss": "listwise_kl", "contrastive_weight": 0.0, "student_temperature": 0.05}]
    loss = FrozenDocumentsLoss(
        model, documents, spec, num_negatives=2, num_positive_ids=1, teacher_scores=True
    )
    x = torch.randn(2, 4, generator=g)
    rows = torch.tensor([label_rows(0, [3, 5], [0], k=2, width=1), label_rows(1, [2], [1], 2, 1)])
    teacher = torch.tensor([[0.9, 0.5, 0.1], [0.8, 0.7, float("nan")]])
    value = loss([{"x": x}], {DOCUMENT_ROWS: rows, TEACHER_SCORES: teacher})
    queries = torch.nn.functional.normalize(model({"x": x})["sentence_embedding"], dim=-1)
    want = 0.0
    for i, candidates in enumerate(([0, 3, 5], [1, 2])):
        student = torch.log_softmax(queries[i] @ documents[candidates].T / 0.05, -1)
        target = torch.softmax(teacher[i, : len(candidates)] / 0.3, -1)
        want += (target * (target.log() - student)).sum() / 2
    assert torch.allclose(value, want, atol=1e-5)
    value.backward()
    assert model.linear.weight.grad is not None
    with pytest.raises(BatchShapeError, match=r"needs \(2, 3\) teacher scores"):
        loss([{"x": x}], {DOCUMENT_ROWS: rows, TEACHER_SCORES: teacher[:, :2]})


def test_losses_needing_teacher_scores_are_refused_without_them():
    with pytest.raises(ConfigError, match=r"loss\[0\] \(margin_mse\): margin_mse: needs teacher"):
        FrozenDocumentsLoss(
            QueryTower(),
            torch.zeros(4, 3),
            [{"loss": "margin_mse"}],
            num_negatives=1,
            num_positive_ids=0,
        )
