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

    Subclasses implement :meth:`compute_loss_from_batch` and declare which optional parts of
    the batch they need (:meth:`check_layout`) and which they merely read if present
    (:attr:`reads`).
    """

    name: str = "loss"

    def compute_loss_from_batch(self, batch: EmbeddingBatch) -> Tensor:  # pragma: no cover
        raise NotImplementedError

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
