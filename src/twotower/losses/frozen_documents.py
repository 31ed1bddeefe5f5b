"""Training the query tower against a frozen, pre-encoded document index.

With separate towers and a frozen document tower, every document is encoded once (from the
embedding cache) and a training step encodes only the queries: hundreds of hard negatives per
query cost a table lookup, and the trained model's corpus embeddings are the base model's, so
evaluating it re-encodes no corpus. This is query-side fine-tuning (Lee et al. 2021, "Learning
Dense Representations of Phrases at Scale"); with a frozen index the mined negatives are exactly
those the final model faces.

Batches carry one text column (``anchor``) and a ``label`` row of integers (:func:`label_rows`):
``[positive row, K hard-negative rows (-1 = padding), L known-positive rows (-1 = padding)]``.
A loss that distils a teacher (listwise KL, Margin-MSE) takes the label as a mapping instead:
``{DOCUMENT_ROWS: those rows, TEACHER_SCORES: [T(q, d+), T(q, d-_1..K)]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from twotower.losses.batch import BatchLayout, BatchShapeError, EmbeddingBatch
from twotower.losses.distributed import gather_across_ranks
from twotower.losses.spec import LossSpec, build_loss
from twotower.losses.st_loss import TEACHER_SCORES

# The key of a mapping label holding the rows of :func:`label_rows`.
DOCUMENT_ROWS = "document_rows"


class FrozenDocumentsLoss(nn.Module):
    """Any twotower loss over query embeddings and rows of a fixed document embedding matrix.

    The model encodes the ``anchor`` column; positives and hard negatives are looked up by row in
    ``documents``, and the row numbers double as document ids, so copies of a query's known
    positives are masked as false negatives. Gradients reach the query tower only (and the
    document adapter, where there is one).

    Args:
        model: the sentence-transformers model whose query route encodes the anchors.
        documents: (N, D) embeddings of the corpus, one row per document; kept detached.
        loss: the loss entries, as for :func:`~twotower.losses.spec.build_loss` (mappings or
            parsed specs).
        num_negatives: K, the hard-negative rows in each label row.
        num_positive_ids: L, the known-positive rows in each label row.
        gather_across_devices: under torchrun, every rank's queries and index rows are candidates
            of every rank's anchors (twotower.losses.distributed).
        document_adapter: maps index rows to the model's document embeddings (the ``adapt`` of a
            residual adapter ending the document route, twotower.models.adapter), training with
            the query tower. None: the rows are the document embeddings.

    References:
        - Lee et al. 2021, "Learning Dense Representations of Phrases at Scale" (query-side
          fine-tuning against a fixed index).

    Requirements:
        1. Losses that read no mined negative queries and anchor nothing on documents (d2q and
           d2d blocks would anchor on the frozen embeddings). A loss that reads teacher scores
           (listwise KL over [positive, hard negatives], Margin-MSE) needs mapping labels.

    Inputs:
        +------------+----------------------------------------------------------+
        | Inputs     | Labels                                                   |
        +============+==========================================================+
        | (anchor, ) | 1 + K + L document rows: positive, hard negatives, known |
        |            | positives (-1 = padding), see :func:`label_rows`         |
        +------------+----------------------------------------------------------+
        | (anchor, ) | {DOCUMENT_ROWS: those rows, TEACHER_SCORES: (1 + K)      |
        |            | scores [T(q, d+), T(q, d-_1..K)]}                         |
        +------------+----------------------------------------------------------+

    Relations:
        - :class:`~twotower.losses.st_loss.SentenceTransformerLoss` is the same loss with both
          towers encoding their texts every step.
    """

    def __init__(
        self,
        model: nn.Module,
        documents: Tensor,
        loss: Sequence[LossSpec | Mapping[str, Any]],
        *,
        num_negatives: int,
        num_positive_ids: int,
        teacher_scores: bool = False,
        gather_across_devices: bool = True,
        document_adapter: Callable[[Tensor], Tensor] | None = None,
    ):
        super().__init__()
        self.document_adapter = document_adapter
        self.gather_across_devices = gather_across_devices
        self.model = model
        self.documents = documents.detach()
        self.num_negatives = num_negatives
        self.num_positive_ids = num_positive_ids
        layout = BatchLayout(
            hard_negatives=num_negatives > 0,
            negative_queries=False,
            teacher_scores=teacher_scores,
            listwise_candidates=False,
            document_anchors=True,
        )
        self.loss = build_loss(loss, layout=layout)
        self.teacher_scores = teacher_scores

    def forward(
        self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | Mapping[str, Tensor]
    ) -> Tensor:
        features = list(sentence_features)
        queries = self.model(features[0])["sentence_embedding"]
        if isinstance(labels, Mapping):
            rows, scores = labels[DOCUMENT_ROWS], labels.get(TEACHER_SCORES)
        else:
            rows, scores = labels, None
        batch = self.batch(queries, rows, scores)
        if self.gather_across_devices:  # every rank's queries and index rows are candidates
            batch = gather_across_ranks(batch)
        return self.loss.compute_loss_from_batch(batch)

    def batch(
        self, queries: Tensor, labels: Tensor, teacher_scores: Tensor | None = None
    ) -> EmbeddingBatch:
        """The embedding batch of ``queries``, the document rows named by ``labels`` and, for a
        teacher loss, ``teacher_scores`` (batch, 1 + K)."""
        k = self.num_negatives
        width = 1 + k + self.num_positive_ids
        if labels.dim() != 2 or labels.shape[1] != width:
            raise BatchShapeError(
                f"labels must be (batch, {width}) document rows (positive, {k} hard negatives,"
                f" {self.num_positive_ids} known positives), got shape {tuple(labels.shape)}"
            )
        labels = labels.to(torch.long).cpu()
        positive_rows = labels[:, 0]
        negative_rows = labels[:, 1 : 1 + k]
        documents = self.documents.to(queries.device, queries.dtype)

        def lookup(rows: Tensor) -> Tensor:
            found = documents[rows.clamp(min=0).to(documents.device)]
            if self.document_adapter is None:
                return found
            return self.document_adapter(found)

        t_pos: Tensor | None = None
        t_neg: Tensor | None = None
        if self.teacher_scores:
            if teacher_scores is None or tuple(teacher_scores.shape) != (len(labels), 1 + k):
                shape = None if teacher_scores is None else tuple(teacher_scores.shape)
                raise BatchShapeError(
                    f"the loss needs ({len(labels)}, {1 + k}) teacher scores [T(q, d+),"
                    f" T(q, d-_1..{k})], got {shape}"
                )
            scores = teacher_scores.detach().to(queries.device, torch.float32)
            t_pos = scores[:, 0]
            if k:
                t_neg = scores[:, 1:]
        return EmbeddingBatch(
            teacher_positive_scores=t_pos,
            teacher_negative_scores=t_neg,
            queries=queries,
            positives=lookup(positive_rows),
            hard_negatives=lookup(negative_rows) if k else None,
            hard_negatives_mask=(negative_rows >= 0).to(queries.device) if k else None,
            positive_ids=positive_rows.to(queries.device),
            hard_negative_ids=negative_rows.to(queries.device) if k else None,
            query_positive_ids=labels[:, 1 + k :].to(queries.device),
        )

    def get_config_dict(self) -> dict[str, Any]:
        return {"frozen_documents": int(self.documents.shape[0]), **self.loss.get_config_dict()}

    @property
    def citation(self) -> str:
        return self.loss.citation


def label_rows(
    positive: int, negatives: Sequence[int], positives_of_query: Sequence[int], k: int, width: int
) -> list[int]:
    """One ``label`` row: positive, ``k`` negatives and ``width`` known positives, -1 padded."""
    negatives = list(negatives)[:k]
    known = list(positives_of_query)[:width]
    return [
        positive,
        *negatives,
        *[-1] * (k - len(negatives)),
        *known,
        *[-1] * (width - len(known)),
    ]


__all__ = ["DOCUMENT_ROWS", "FrozenDocumentsLoss", "label_rows"]
