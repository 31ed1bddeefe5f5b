"""The one batch every loss reads: embeddings, masks, ids and teacher scores.

All losses of a combination read the same :class:`EmbeddingBatch`, so the model encodes each text
once. Nothing here calls a model: gradient caching (GradCache) builds the batch from detached
embeddings with ``requires_grad=True`` and calls ``compute_loss_from_batch`` on it.

Rows and anchors (the place for distributed training)
-----------------------------------------------------
Every per-example tensor has ``R`` rows. By default all rows are *anchors* (their query and
positive start a softmax / margin) and all rows are also in-batch *candidates*. Distributed
training gathers the rows of every rank (``all_gather_with_grad``) and passes the gathered
tensors with ``anchor_offset = rank * local_batch`` and ``num_anchors = local_batch``: only rows
``anchor_offset : anchor_offset + num_anchors`` anchor a loss term (each rank averages over its
own anchors), while all ``R`` rows (queries, positives, shared hard negatives, listwise pools)
serve as in-batch candidates. Ids are global as well, so false-negative masking works across
ranks. Losses that only use per-example data (Margin-MSE, the KL term of listwise distillation)
read the anchor rows only.

Ids
---
Ids are int64 tensors; any negative value (use -1) means "unknown / padding" and never matches.
Document ids and query ids may live in different id spaces: they are only ever compared with ids
of the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


class BatchShapeError(ValueError):
    """An :class:`EmbeddingBatch` whose tensors do not fit together (raised at run time)."""


# Each optional (R, X, D) block of a batch and its (R, X) per-slot fields, which need the block.
_SLOT_FIELDS: dict[str, tuple[str, ...]] = {
    "hard_negatives": ("hard_negatives_mask", "hard_negative_ids", "teacher_negative_scores"),
    "negative_queries": (
        "negative_queries_mask",
        "negative_query_ids",
        "teacher_negative_query_scores",
    ),
    "candidates": ("candidates_mask", "candidate_ids", "candidate_teacher_scores"),
}


@dataclass
class EmbeddingBatch:
    """Embeddings of one training batch, plus what the losses need to mask and distil.

    Shapes: ``R`` rows, ``D`` embedding dimension, ``K`` hard-negative documents per row,
    ``M`` negative queries per row, ``L`` known-positive ids per query, ``P`` listwise candidates.

    Attributes:
        queries: (R, D) query embeddings q_i.
        positives: (R, D) positive document embeddings d_i.
        hard_negatives: (R, K, D) hard-negative documents d_i^-(k); ragged lists are padded.
        hard_negatives_mask: (R, K) bool, True where the slot holds a real document
            (None = all real).
        negative_queries: (R, M, D) mined negative queries q_i^-(m) of document d_i (DANCE).
        negative_queries_mask: (R, M) bool, True = real.
        query_ids: (R,) int64 id of q_i (duplicate queries are masked in q2q / d2q).
        positive_ids: (R,) int64 document id of d_i.
        hard_negative_ids: (R, K) int64 document ids of the hard negatives.
        negative_query_ids: (R, M) int64 query ids of the negative queries.
        query_positive_ids: (R, L) int64, all known positive document ids of q_i under the qrels,
            padded with -1. A candidate document with one of these ids is a false negative of q_i;
            a query q_j listing d_i's id is a false negative of d_i.
        teacher_positive_scores: (R,) T(q_i, d_i).
        teacher_negative_scores: (R, K) T(q_i, d_i^-(k)).
        teacher_negative_query_scores: (R, M) T(q_i^-(m), d_i), the teacher scoring the
            *negative query* against the positive document (Margin-MSE-Dual, mined form).
        teacher_pair_scores: (R, R) T(q_a, d_b) for every query a and positive document b of the
            batch (Margin-MSE-Dual, in-batch form); NaN marks a pair the teacher did not score.
        candidates: (R, P, D) listwise candidate documents; when None, the listwise loss uses
            [positive, hard negatives] with their teacher scores and ids.
        candidates_mask: (R, P) bool, True = real.
        candidate_ids: (R, P) int64 document ids of the candidates.
        candidate_teacher_scores: (R, P) teacher scores T(q_i, c_ip).
        anchor_offset: first anchor row (see "Rows and anchors").
        num_anchors: number of anchor rows (None = all rows from ``anchor_offset``).
    """

    queries: Tensor
    positives: Tensor
    hard_negatives: Tensor | None = None
    hard_negatives_mask: Tensor | None = None
    negative_queries: Tensor | None = None
    negative_queries_mask: Tensor | None = None
    query_ids: Tensor | None = None
    positive_ids: Tensor | None = None
    hard_negative_ids: Tensor | None = None
    negative_query_ids: Tensor | None = None
    query_positive_ids: Tensor | None = None
    teacher_positive_scores: Tensor | None = None
    teacher_negative_scores: Tensor | None = None
    teacher_negative_query_scores: Tensor | None = None
    teacher_pair_scores: Tensor | None = None
    candidates: Tensor | None = None
    candidates_mask: Tensor | None = None
    candidate_ids: Tensor | None = None
    candidate_teacher_scores: Tensor | None = None
    anchor_offset: int = 0
    num_anchors: int | None = None

    # ------------------------------------------------------------------ shape checks
    @property
    def num_rows(self) -> int:
        return self.queries.shape[0]

    @property
    def anchor_slice(self) -> slice:
        end = self.num_rows if self.num_anchors is None else self.anchor_offset + self.num_anchors
        return slice(self.anchor_offset, end)

    def anchor_index(self) -> Tensor:
        """Global row index of each anchor, (n,)."""
        s = self.anchor_slice
        return torch.arange(s.start, s.stop, device=self.queries.device)

    def validate(self) -> None:
        """Raise :class:`BatchShapeError` naming the first field whose shape does not fit."""
        q = self.queries
        if q.dim() != 2:
            raise BatchShapeError(f"queries must be (R, D), got shape {tuple(q.shape)}")
        r, d = q.shape
        if r == 0:
            raise BatchShapeError("queries is empty (R = 0)")

        def expect(name: str, shape: tuple) -> None:
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != shape:
                raise BatchShapeError(f"{name} must have shape {shape}, got {tuple(t.shape)}")

        def expect_dims(name: str, ndim: int, lead: tuple[int, ...], last: int | None) -> tuple:
            t = getattr(self, name)
            if (
                t.dim() != ndim
                or tuple(t.shape[: len(lead)]) != lead
                or (last is not None and t.shape[-1] != last)
            ):
                raise BatchShapeError(
                    f"{name} must be {ndim}-D with leading dims {lead}"
                    + (f" and last dim {last}" if last is not None else "")
                    + f", got shape {tuple(t.shape)}"
                )
            return tuple(t.shape)

        expect("positives", (r, d))
        for block, slot_fields in _SLOT_FIELDS.items():
            if getattr(self, block) is None:
                for name in slot_fields:
                    if getattr(self, name) is not None:
                        raise BatchShapeError(f"{name} is set but {block} is None")
                continue
            _, slots, _ = expect_dims(block, 3, (r,), d)
            for name in slot_fields:
                expect(name, (r, slots))
        expect("query_ids", (r,))
        expect("positive_ids", (r,))
        expect("teacher_positive_scores", (r,))
        expect("teacher_pair_scores", (r, r))
        if self.query_positive_ids is not None:
            expect_dims("query_positive_ids", 2, (r,), None)
        for f in fields(self):
            t = getattr(self, f.name)
            if not isinstance(t, Tensor):
                continue
            if f.name.endswith("_mask") and t.dtype != torch.bool:
                raise BatchShapeError(f"{f.name} must be a bool tensor, got {t.dtype}")
            if f.name.endswith("_ids") and (t.dtype.is_floating_point or t.dtype == torch.bool):
                raise BatchShapeError(f"{f.name} must be an integer tensor, got {t.dtype}")
        s = self.anchor_slice
        if not (0 <= s.start < s.stop <= r):
            raise BatchShapeError(
                f"anchor rows {s.start}:{s.stop} (anchor_offset={self.anchor_offset}, "
                f"num_anchors={self.num_anchors}) do not fit in {r} rows"
            )


@dataclass(frozen=True)
class BatchLayout:
    """What the batches will contain, declared up front so a loss can refuse at construction.

    Attributes:
        hard_negatives: batches carry hard-negative documents.
        negative_queries: batches carry mined negative queries (DANCE).
        teacher_scores: batches carry teacher scores (positives, negatives, negative queries).
        listwise_candidates: batches carry a separate listwise ``candidates`` block.
        document_anchors: the positive documents may anchor a softmax (d2q / d2d blocks). False
            when the document column is not a per-example encoded document that receives
            gradients, e.g. documents read from a frozen pre-encoded index.
    """

    hard_negatives: bool = True
    negative_queries: bool = False
    teacher_scores: bool = True
    listwise_candidates: bool = False
    document_anchors: bool = True
