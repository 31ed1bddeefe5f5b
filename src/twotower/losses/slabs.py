"""Slabs of a contrastive block: score matrices with the entries to drop, each reduced by its own
log-sum-exp so that no large score matrices are concatenated."""

from __future__ import annotations

import torch
from torch import Tensor


def mask_union(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """Entries dropped by either mask (None: none dropped)."""
    if a is None:
        return b
    if b is None:
        return a
    return a | b


class Slab:
    """Scores of one slab of candidates for every anchor, and which entries to drop."""

    __slots__ = ("scores", "drop")

    def __init__(self, scores: Tensor, drop: Tensor | None = None) -> None:
        self.scores = scores
        self.drop = drop

    def lse(self) -> Tensor:
        s = self.scores if self.drop is None else self.scores.masked_fill(self.drop, float("-inf"))
        return torch.logsumexp(s, dim=-1)


def block_slabs(
    scores: Tensor, drop: Tensor | None, slots: Slab | None, false_negative_mask: Tensor | None
) -> list[Slab]:
    """A block's in-batch slab (R columns) and slot slab, less the (n, R + X) false negatives."""
    if false_negative_mask is not None:
        r = scores.shape[1]
        drop = mask_union(drop, false_negative_mask[:, :r])
        if slots is not None:
            slots.drop = mask_union(slots.drop, false_negative_mask[:, r:])
    return [Slab(scores, drop)] + ([slots] if slots is not None else [])
