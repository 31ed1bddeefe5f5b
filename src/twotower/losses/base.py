"""Common base of the embedding-level losses and shared construction-time checks."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from twotower.errors import ConfigError
from twotower.losses.batch import BatchLayout, EmbeddingBatch


def check_weight(value: float, option: str, *, allow_zero: bool = True) -> float:
    """A loss weight: finite and >= 0 (or > 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option}: must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"{option}: must be finite, got {value!r}")
    if v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{option}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def check_temperature(value: float, option: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option}: must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{option}: a temperature must be finite and > 0, got {value!r}")
    return v


class EmbeddingLoss(nn.Module):
    """A loss over an :class:`EmbeddingBatch`; never calls a model.

    Subclasses implement :meth:`compute_loss_from_batch` (one term) or :meth:`compute_terms`
    (several additive terms, logged apart), and declare which optional parts of the batch they
    need (:meth:`check_layout`) and which they merely read if present (:attr:`reads`).

    A model as the first argument is refused with one line naming the loss that takes a
    model (``st_counterpart``): ``ContrastiveLoss(model)`` is sentence-transformers' habit, and
    would otherwise bind the model to the first option.
    """

    name: str = "loss"
    # The twotower.losses class that takes a SentenceTransformer and wraps this loss.
    st_counterpart: str = "TwoTowerLoss"

    def __new__(cls, *args: Any, **kwargs: Any):
        if args and isinstance(args[0], nn.Module):
            raise TypeError(
                f"{cls.__name__} scores an EmbeddingBatch and takes no model; to train a"
                f" SentenceTransformer use twotower.losses.{cls.st_counterpart}(model, ...)"
            )
        return super().__new__(cls)

    def compute_loss_from_batch(self, batch: EmbeddingBatch) -> Tensor:
        """The loss: the sum of :meth:`compute_terms`, in their order."""
        total: Tensor | None = None
        for value in self.compute_terms(batch).values():
            total = value if total is None else total + value
        assert total is not None
        return total

    def compute_terms(self, batch: EmbeddingBatch) -> dict[str, Tensor]:
        """The loss's additive terms (weights applied), keyed by names that start with
        :attr:`name`; their sum is :meth:`compute_loss_from_batch`."""
        return {self.name: self.compute_loss_from_batch(batch)}

    def forward(self, batch: EmbeddingBatch) -> Tensor:
        return self.compute_loss_from_batch(batch)

    def check_layout(self, layout: BatchLayout) -> None:
        """Raise ConfigError if batches shaped like ``layout`` cannot feed this loss."""

    @property
    def reads(self) -> frozenset[str]:
        """Optional batch parts this loss uses: hard_negatives, negative_queries, teacher, candidates."""
        return frozenset()

    def get_config_dict(self) -> dict[str, Any]:
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.get_config_dict().items())

    @property
    def citation(self) -> str:
        return ""
