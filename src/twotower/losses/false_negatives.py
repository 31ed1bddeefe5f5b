"""False negatives by id: candidates of a softmax that are copies of the anchor's positives.

In-batch and mined negatives are drawn without looking at relevance, so a candidate can be the
anchor's own positive (another copy of it) or another document the qrels mark relevant. With ids
(:class:`~twotower.losses.batch.EmbeddingBatch`) the contrastive and listwise losses leave such
candidates out of the denominator. Rules of the contrastive blocks, for anchor row i:

* q2d and d2d: a candidate document whose id is d_i's id or one of q_i's known positives
  (``query_positive_ids``) is masked, except the positive slot itself.
* d2q: a query q_j is masked when it has q_i's id, d_i's id as its positive, or lists d_i among
  its known positives.
* q2q: a query with q_i's id is masked.

In every block a candidate id occurring twice counts once (first occurrence kept). Negative ids
mean "unknown / padding" and match nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twotower.losses.batch import EmbeddingBatch


def first_occurrence_duplicates(ids: Tensor) -> Tensor:
    """(n, C) True at every position whose (non-negative) id already occurred earlier in its row.

    The first occurrence of each id is kept. Sort-based, O(C log C).
    """
    sorted_ids, order = torch.sort(ids, dim=1, stable=True)  # stable: the earliest copy sorts first
    dup_sorted = torch.zeros_like(sorted_ids, dtype=torch.bool)
    dup_sorted[:, 1:] = (sorted_ids[:, 1:] == sorted_ids[:, :-1]) & (sorted_ids[:, 1:] >= 0)
    return torch.zeros_like(dup_sorted).scatter_(1, order, dup_sorted)


def id_in(ids: Tensor, forbidden: Tensor) -> Tensor:
    """``ids`` (n or 1, C) -> (n, C) True where the id is one of the row's ``forbidden`` (n, F) ids.

    Negative ids match nothing. A loop over the (few) forbidden columns keeps memory at (n, C)
    instead of materialising an (n, C, F) comparison.
    """
    n = forbidden.shape[0]
    ids = ids.masked_fill(ids < 0, -1)
    forbidden = forbidden.masked_fill(forbidden < 0, -2)  # -2 never equals a candidate id (>= -1)
    hit = torch.zeros(n, ids.shape[-1], dtype=torch.bool, device=ids.device)
    for f in range(forbidden.shape[1]):
        hit |= ids == forbidden[:, f : f + 1]
    return hit


def false_negatives(candidate_ids: Tensor, forbidden: Tensor) -> Tensor:
    """(n, C) True where a candidate (ids (n or 1, C)) has a ``forbidden`` id or an earlier one's."""
    return id_in(candidate_ids, forbidden) | first_occurrence_duplicates(candidate_ids)


def block_false_negatives(
    in_batch: Tensor,
    slots: Tensor | None,
    forbidden: Tensor,
    *,
    shared: bool,
    anchor_slice: slice,
) -> Tensor:
    """:func:`false_negatives` of one block: the R in-batch candidates, then the slot candidates.

    ``in_batch`` (R,) and ``slots`` (R, X) are the candidates' ids (slots: hard negatives or
    negative queries; None when the block has none). Shared slots are candidates of every anchor,
    giving (n, R + R·X); otherwise each anchor sees its own row's slots, (n, R + X).
    """
    if slots is None:
        candidates = in_batch.unsqueeze(0)
    elif shared:
        candidates = torch.cat([in_batch, slots.reshape(-1)]).unsqueeze(0)
    else:
        own = slots[anchor_slice]
        candidates = torch.cat([in_batch.unsqueeze(0).expand(own.shape[0], -1), own], dim=1)
    return false_negatives(candidates, forbidden)


@dataclass(frozen=True)
class BatchIds:
    """The ids of a batch as int64, -1 where unknown or padding; see :meth:`from_batch`.

    Attributes:
        documents: (R,) id of each positive d_i.
        queries: (R,) id of each query q_i.
        query_positives: (R, L) known positive document ids of q_i (L may be 0).
        hard_negatives: (R, K) ids of the hard negatives, or None without hard negatives.
        negative_queries: (R, M) ids of the negative queries, or None without them.
        not_negatives_of_anchor: (n, 1 + L) documents that are no negatives of anchor row i:
            d_i itself and q_i's known positives.
    """

    documents: Tensor
    queries: Tensor
    query_positives: Tensor
    hard_negatives: Tensor | None
    negative_queries: Tensor | None
    not_negatives_of_anchor: Tensor

    @classmethod
    def from_batch(cls, batch: EmbeddingBatch, anchors: Tensor) -> BatchIds | None:
        """The ids of ``batch`` for the ``anchors`` rows, or None when it carries no id at all."""
        if (
            batch.positive_ids is None
            and batch.query_ids is None
            and batch.query_positive_ids is None
        ):
            return None
        r = batch.num_rows
        dev = batch.queries.device

        def unknown(*shape: int) -> Tensor:
            return torch.full(shape, -1, dtype=torch.long, device=dev)

        def known(ids: Tensor | None, *shape: int) -> Tensor:
            return ids.long() if ids is not None else unknown(*shape)

        # Padding slots get id -1 so they can neither be forbidden nor shadow a real copy as "first".
        def slot_ids(embeddings: Tensor | None, ids: Tensor | None, mask: Tensor | None):
            if embeddings is None:
                return None
            out = known(ids, r, embeddings.shape[1])
            return out.masked_fill(~mask, -1) if mask is not None else out

        documents = known(batch.positive_ids, r)
        query_positives = known(batch.query_positive_ids, r, 0)
        return cls(
            documents=documents,
            queries=known(batch.query_ids, r),
            query_positives=query_positives,
            hard_negatives=slot_ids(
                batch.hard_negatives, batch.hard_negative_ids, batch.hard_negatives_mask
            ),
            negative_queries=slot_ids(
                batch.negative_queries, batch.negative_query_ids, batch.negative_queries_mask
            ),
            not_negatives_of_anchor=torch.cat(
                [documents[anchors].unsqueeze(1), query_positives[anchors]], dim=1
            ),
        )

    def queries_relevant_to_documents(self, anchors: Tensor) -> Tensor:
        """(n, R) True where query q_j is relevant to anchor document d_i.

        That is: d_i is q_j's positive or one of q_j's known positives (d_i's id known).
        """
        d_id = self.documents[anchors].unsqueeze(1)  # (n, 1)
        relevant = self.documents.unsqueeze(0) == d_id
        for col in range(self.query_positives.shape[1]):
            relevant |= self.query_positives[:, col].unsqueeze(0) == d_id
        return relevant & (d_id >= 0)


__all__ = [
    "BatchIds",
    "block_false_negatives",
    "false_negatives",
    "first_occurrence_duplicates",
    "id_in",
]
