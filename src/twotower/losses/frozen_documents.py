"""Training the query tower against a frozen, pre-encoded document index.

With separate towers and a frozen document tower, every document is encoded once (from the
embedding cache) and a training step encodes only the queries: hundreds of hard negatives per
query cost a table lookup, and the trained model's corpus embeddings are the base model's, so
evaluating it re-encodes no corpus. This is query-side fine-tuning (Lee et al. 2021, "Learning
Dense Representations of Phrases at Scale"); with a frozen index the mined negatives are exactly
those the final model faces.

Batches carry one text column (``anchor``) and a ``label`` row of integers (:func:`label_rows`):
``[positive row, K hard-negative rows (-1 = padding), L known-positive rows (-1 = padding)]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from twotower.losses.batch import BatchLayout, BatchShapeError, EmbeddingBatch
from twotower.losses.distributed import gather_across_ranks
from twotower.losses.spec import LossSpec, build_loss


class FrozenDocumentsLoss(nn.Module):
    """Any twotower loss over query embeddings and rows of a fixed document embedding matrix.

    The model encodes the ``anchor`` column; positives and hard negatives are looked up by row in
    ``documents``, and the row numbers double as document ids, so copies of a query's known
    positives are masked as false negatives. Gradients reach the query tower only.

    Args:
        model: the sentence-transformers model whose query route encodes the anchors.
        documents: (N, D) embeddings of the corpus, one row per document; kept detached.
        loss: the loss entries, as for :func:`~twotower.losses.spec.build_loss` (mappings or
            parsed specs).
        num_negatives: K, the hard-negative rows in each label row.
        num_positive_ids: L, the known-positive rows in each label row.
        gather_across_devices: under torchrun, every rank's queries and index rows are candidates
            of every rank's anchors (twotower.losses.distributed).

    References:
        - Lee et al. 2021, "Learning Dense Representations of Phrases at Scale" (query-side
          fine-tuning against a fixed index).

    Requirements:
        1. Losses that read neither teacher scores nor mined negative queries: the contrastive
           blocks (d2q and d2d anchor on the frozen document embeddings).

    Inputs:
        +------------+----------------------------------------------------------+
        | Inputs     | Labels                                                   |
        +============+==========================================================+
        | (anchor, ) | 1 + K + L document rows: positive, hard negatives, known |
        |            | positives (-1 = padding), see :func:`label_rows`         |
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
        gather_across_devices: bool = True,
    ):
        super().__init__()
        self.gather_across_devices = gather_across_devices
        self.model = model
        self.documents = documents.detach()
        self.num_negatives = num_negatives
        self.num_positive_ids = num_positive_ids
        layout = BatchLayout(
            hard_negatives=num_negatives > 0,
            negative_queries=False,
            teacher_scores=False,
            listwise_candidates=False,
            document_anchors=True,
        )
        self.loss = build_loss(loss, layout=layout)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)
        queries = self.model(features[0])["sentence_embedding"]
        batch = self.batch(queries, labels)
        if self.gather_across_devices:  # every rank's queries and index rows are candidates
            batch = gather_across_ranks(batch)
        return self.loss.compute_loss_from_embeddings(batch)

    def batch(self, queries: Tensor, labels: Tensor) -> EmbeddingBatch:
        """The embedding batch of ``queries`` and the document rows named by ``labels``."""
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
            return documents[rows.clamp(min=0).to(documents.device)]

        return EmbeddingBatch(
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


__all__ = ["FrozenDocumentsLoss", "label_rows"]
