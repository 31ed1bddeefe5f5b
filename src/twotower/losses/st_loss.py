"""The losses as a plain sentence-transformers loss module.

``SentenceTransformerLoss(model, loss)`` follows the column convention of sentence-transformers'
losses: ``forward(sentence_features, labels)`` with the columns

    anchor (query), positive, hard-negative document 1..K, negative query 1..M

where M = ``num_negative_query_columns`` (DANCE mined negative queries; default 0) and K is the rest.
It encodes every column once, builds an :class:`~twotower.losses.batch.EmbeddingBatch` and calls the
loss's ``compute_loss_from_batch``.

Labels (only read when a loss needs teacher scores), as in sentence-transformers' ``MarginMSELoss``
and ``DistillKLDivLoss``:

* (N, 1 + K + M) teacher scores: [T(q, d+), T(q, d-_1..K), T(q-_1..M, d+)], or
* (N, K + M) margins: [T(q, d+) - T(q, d-_k)..., T(q+, d) - T(q-_m, d)...], or
* (N,) one margin when K + M = 1.

Margins are stored as T(q, d+) = 0, T(negative) = -margin: Margin-MSE and the KL term only use
differences of teacher scores, so this is exact for them; the listwise near-top mask (a ratio of
the top score) needs absolute scores, so give full scores for ``listwise_kl`` with
``near_top_ratio``.

Labels may instead be a mapping: ``{"teacher_scores": <the tensor above or None>, "query_ids":
(N,), "positive_ids": (N,), "hard_negative_ids": (N, K), "negative_query_ids": (N, M),
"query_positive_ids": (N, L) padded with -1}`` (int64). With ids, the losses mask false
negatives by id: a known positive of q_i that appears as another row's positive or hard
negative, a repeated document or query. twotower's training rows always send them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

# One merged forward for like-shaped columns (sentence-transformers 6).
from sentence_transformers.base.losses.merged_forward import embed_columns as _embed_columns
from torch import Tensor, nn

from twotower.errors import ConfigError, check_integer
from twotower.losses.base import EmbeddingLoss
from twotower.losses.batch import BatchLayout, BatchShapeError, EmbeddingBatch
from twotower.losses.distributed import gather_across_ranks
from twotower.losses.spec import build_loss

# The keys of a mapping label: teacher scores and the id tensors of EmbeddingBatch.
TEACHER_SCORES = "teacher_scores"
ID_FIELDS = (
    "query_ids",
    "positive_ids",
    "hard_negative_ids",
    "negative_query_ids",
    "query_positive_ids",
)
Labels = Tensor | Mapping[str, Tensor | None] | None


class SentenceTransformerLoss(nn.Module):
    """Any twotower loss (or weighted sum) as a sentence-transformers loss.

    Args:
        model: the SentenceTransformer being trained.
        loss: a list of loss specs (as in a recipe's ``loss:``), one spec mapping, or an
            :class:`EmbeddingLoss` (e.g. ``ContrastiveLoss(preset="mnrl_dual")``).
        num_negative_query_columns: how many of the trailing columns are negative queries (M).
        num_hard_negative_columns: if given, the exact number of hard-negative document columns (K),
            checked at construction against what the loss needs and on every batch.
        document_anchors: whether the positive column may anchor a softmax (see BatchLayout).
        gather_across_devices: under distributed training, every rank's rows are candidates of
            every rank's anchors, with gradients (twotower.losses.distributed); no effect in
            one process.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Any,
        *,
        num_negative_query_columns: int = 0,
        num_hard_negative_columns: int | None = None,
        document_anchors: bool = True,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        check_integer("num_negative_query_columns", num_negative_query_columns, minimum=0)
        check_integer(
            "num_hard_negative_columns", num_hard_negative_columns, minimum=0, optional=True
        )
        self.num_negative_query_columns = num_negative_query_columns
        self.gather_across_devices = gather_across_devices
        self.num_hard_negative_columns = num_hard_negative_columns
        self.layout = BatchLayout(
            hard_negatives=num_hard_negative_columns is None or num_hard_negative_columns > 0,
            negative_queries=num_negative_query_columns > 0,
            teacher_scores=True,
            listwise_candidates=False,
            document_anchors=document_anchors,
        )
        # Not ``self.loss``: sentence-transformers' model card lists a loss's ``.loss`` as a loss.
        if isinstance(loss, EmbeddingLoss):
            loss.check_layout(self.layout)
            self.objective = loss
        else:
            self.objective = build_loss(loss, layout=self.layout)
        if num_negative_query_columns > 0 and "negative_queries" not in self.objective.reads:
            raise ConfigError(
                f"num_negative_query_columns: {num_negative_query_columns} column(s) of negative queries, but no"
                " configured loss reads negative queries (they need a contrastive d2q block, or margin_mse"
                " with dual_weight > 0 and dual_negatives='mined')"
            )

    def embeddings_to_batch(self, embeddings: list[Tensor], labels: Labels) -> EmbeddingBatch:
        m = self.num_negative_query_columns
        k = len(embeddings) - 2 - m
        if k < 0:
            raise BatchShapeError(
                f"expected columns (anchor, positive, {m} negative-query column(s)) at least, got {len(embeddings)} columns"
            )
        if self.num_hard_negative_columns is not None and k != self.num_hard_negative_columns:
            raise BatchShapeError(
                f"expected {self.num_hard_negative_columns} hard-negative column(s), got {k}"
                f" ({len(embeddings)} columns, {m} of them negative queries)"
            )
        batch = EmbeddingBatch(
            queries=embeddings[0],
            positives=embeddings[1],
            hard_negatives=torch.stack(embeddings[2 : 2 + k], dim=1) if k else None,
            negative_queries=torch.stack(embeddings[2 + k :], dim=1) if m else None,
        )
        scores: Tensor | None
        if isinstance(labels, Mapping):
            scores = labels.get(TEACHER_SCORES)
            self._attach_ids(batch, labels, k, m)
        else:
            scores = labels
        if "teacher" in self.objective.reads:
            self._attach_teacher(batch, scores, k, m)
        return batch

    @staticmethod
    def _attach_ids(batch: EmbeddingBatch, labels: Mapping[str, Tensor | None], k: int, m: int):
        device = batch.queries.device
        ids = {name: labels.get(name) for name in ID_FIELDS}
        widths = {"hard_negative_ids": k, "negative_query_ids": m}
        for name, value in ids.items():
            if value is None or widths.get(name, 1) == 0:
                continue
            setattr(batch, name, value.to(device=device, dtype=torch.long))

    @staticmethod
    def _attach_teacher(batch: EmbeddingBatch, labels: Tensor | None, k: int, m: int) -> None:
        n = batch.queries.shape[0]
        if labels is None:
            raise BatchShapeError("the loss needs teacher scores, but the batch has no labels")
        # Teacher scores stay at least float32 even when the model runs in bf16/fp16.
        labels = labels.detach().to(torch.promote_types(batch.queries.dtype, torch.float32))
        if labels.shape == (n,) and k + m == 1:
            labels = labels.unsqueeze(1)
        if labels.shape == (n, 1 + k + m):
            t_pos, t_rest = labels[:, 0], labels[:, 1:]
        elif labels.shape == (n, k + m):
            # Margins T(pos) - T(neg): store T(pos) = 0 and T(neg) = -margin (only differences matter).
            t_pos, t_rest = labels.new_zeros(n), -labels
        else:
            raise BatchShapeError(
                f"labels of shape {tuple(labels.shape)} do not fit {k} hard-negative and {m} negative-query"
                f" column(s): expected ({n}, {1 + k + m}) teacher scores [T(q,d+), T(q,d-)..., T(q-,d+)...]"
                f" or ({n}, {k + m}) margins"
            )
        batch.teacher_positive_scores = t_pos
        if k:
            batch.teacher_negative_scores = t_rest[:, :k]
        if m:
            batch.teacher_negative_query_scores = t_rest[:, k:]

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Labels) -> Tensor:
        embeddings = _embed_columns(self.model, list(sentence_features))
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Labels) -> Tensor:
        """sentence-transformers' signature: per-column embeddings + labels."""
        return self.objective.compute_loss_from_batch(
            self.batch_from_embeddings(embeddings, labels)
        )

    def batch_from_embeddings(self, embeddings: list[Tensor], labels: Labels) -> EmbeddingBatch:
        """The batch of per-column embeddings and labels; under torchrun, every rank's rows."""
        batch = self.embeddings_to_batch(list(embeddings), labels)
        return gather_across_ranks(batch) if self.gather_across_devices else batch

    def get_config_dict(self) -> dict[str, Any]:
        cfg = self.objective.get_config_dict()
        if self.num_negative_query_columns:
            cfg["num_negative_query_columns"] = self.num_negative_query_columns
        return cfg

    @property
    def citation(self) -> str:
        return self.objective.citation


__all__ = ["ID_FIELDS", "TEACHER_SCORES", "SentenceTransformerLoss"]
