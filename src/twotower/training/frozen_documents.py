"""Training the query tower against a frozen, pre-encoded document index.

With separate towers and ``model.train_document_tower: false``, the document tower keeps its
weights, so every document is encoded once (from the embedding cache) and a training step
encodes only the queries: hundreds of hard negatives per query cost a table lookup, and the
trained model's corpus embeddings are the base model's, so evaluating it re-encodes no corpus.
This is query-side fine-tuning (Lee et al. 2021, "Learning Dense Representations of Phrases
at Scale"); with a frozen index the mined negatives are exactly those the final model faces.

Batches carry one text column (``anchor``) and a ``label`` row of integers:
``[positive row, K hard-negative rows (-1 = padding), L known-positive rows (-1 = padding)]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from twotower.losses.batch import BatchLayout, EmbeddingBatch
from twotower.losses.spec import build_loss


class FrozenDocumentsLoss(nn.Module):
    """Any twotower loss over (query embeddings, rows of a fixed document embedding matrix)."""

    def __init__(
        self,
        model: nn.Module,
        documents: Tensor,
        loss: Any,
        *,
        num_negatives: int,
        num_positive_ids: int,
    ):
        super().__init__()
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
        return self.loss.compute_loss_from_embeddings(self.batch(queries, labels))

    def batch(self, queries: Tensor, labels: Tensor) -> EmbeddingBatch:
        labels = labels.to(torch.long).cpu()
        k = self.num_negatives
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
