"""Gradient caching (GradCache; Gao, Zhang, Han, Callan 2021) for any twotower loss.

Contrastive losses improve with the number of in-batch negatives, but activation memory grows
with the batch. GradCache decouples the two: (1) embed the whole batch in mini-batches without
a graph, (2) compute the loss on the full batch's embeddings and cache the gradients with
respect to them, (3) re-embed each mini-batch with a graph and back-propagate its slice of the
cached gradients. Peak activation memory is one mini-batch's; the gradients equal those of the
full batch (dropout is replayed exactly). Tamber et al. reach a 4,096-query batch this way.

The three steps are sentence-transformers' own machinery (``CachedLossMixin``, as used by its
``CachedMultipleNegativesRankingLoss``); this module only plugs our losses into it, so every
loss, weighted combination and batch layout of :class:`SentenceTransformerLoss` can be cached.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from torch import Tensor

from twotower.errors import check_integer
from twotower.losses.citations import CITE_GRADCACHE
from twotower.losses.st_loss import Labels, SentenceTransformerLoss


class CachedSentenceTransformerLoss(CachedLossMixin, SentenceTransformerLoss):
    """:class:`SentenceTransformerLoss` with gradient caching: same loss, same gradients, the
    memory of a ``mini_batch_size`` batch.

    Args:
        model, loss, **kwargs: as for :class:`SentenceTransformerLoss`.
        mini_batch_size: texts per forward pass of each column. Smaller: less memory, a little
            more time (every text is embedded twice).
        mini_batch_num_tokens: instead, pack mini-batches up to this many non-padding tokens.
        show_progress_bar: a progress bar over the mini-batches.
    """

    def __init__(
        self,
        model: Any,
        loss: Any,
        *,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
        **kwargs: Any,
    ) -> None:
        check_integer("mini_batch_size", mini_batch_size, minimum=1)
        check_integer("mini_batch_num_tokens", mini_batch_num_tokens, minimum=1, optional=True)
        SentenceTransformerLoss.__init__(self, model, loss, **kwargs)
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Labels = None, *, with_backward: bool = False
    ) -> Tensor:
        """The loss over the whole batch from its mini-batch embeddings (step 2)."""
        embeddings = [torch.cat(column) for column in reps]
        loss = self.compute_loss_from_embeddings(embeddings, labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Labels) -> Tensor:
        # Typed Tensor | None there, but handed to calculate_loss untouched: a mapping passes.
        return self.forward_cached(sentence_features, labels)  # type: ignore[arg-type]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "mini_batch_size": self.mini_batch_size,
            **(
                {"mini_batch_num_tokens": self.mini_batch_num_tokens}
                if self.mini_batch_num_tokens
                else {}
            ),
        }

    @property
    def citation(self) -> str:
        return super().citation + "\n" + CITE_GRADCACHE


__all__ = ["CachedSentenceTransformerLoss"]
