"""A weighted sum of losses over one batch:  L = Σ_t w_t · L_t.

Every term reads the same :class:`~twotower.losses.batch.EmbeddingBatch`, so a combination such as
Margin-MSE (Hofstätter et al. 2020) + MNRL-Dual (Li et al. 2021) encodes each text once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from torch import Tensor, nn

from twotower.errors import ConfigError
from twotower.losses.base import EmbeddingLoss, check_weight
from twotower.losses.batch import BatchLayout, EmbeddingBatch


class CombinedLoss(EmbeddingLoss):
    """Σ_t w_t · L_t over one batch; a term of weight 0 is not computed.

    Args:
        terms: ``(weight, loss)`` pairs; weights finite and >= 0, not all 0.
        layout: what the batches will contain; when given, every term checks it now.

    Requirements:
        1. What each term requires; the batch holds the union (see :attr:`reads`).

    Relations:
        - :func:`~twotower.losses.spec.build_loss` builds it from a recipe's ``loss:`` list.
    """

    name = "combined"

    def __init__(
        self, terms: Sequence[tuple[float, EmbeddingLoss]], *, layout: BatchLayout | None = None
    ) -> None:
        super().__init__()
        if not terms:
            raise ConfigError("loss: at least one loss term is required")
        weights = []
        for i, (w, loss) in enumerate(terms):
            weights.append(check_weight(w, f"loss[{i}].weight"))
            if not isinstance(loss, EmbeddingLoss):
                raise ConfigError(
                    f"loss[{i}]: expected an EmbeddingLoss, got {type(loss).__name__}"
                )
        if all(w == 0 for w in weights):
            raise ConfigError("loss: every term has weight 0, the loss would be constant")
        self.weights = tuple(weights)
        self.losses = nn.ModuleList([loss for _, loss in terms])
        names = [loss.name for _, loss in terms]
        # Unique names for logging: contrastive, contrastive_2, ...
        self.term_names = tuple(
            name if names[:i].count(name) == 0 else f"{name}_{names[:i].count(name) + 1}"
            for i, name in enumerate(names)
        )
        # The detached value of each computed term in the last call, for a report of a
        # non-finite total that names the term at fault; read it, never write it.
        self.last_terms: dict[str, Tensor] = {}
        if layout is not None:
            self.check_layout(layout)

    @property
    def _terms(self) -> list[EmbeddingLoss]:
        """``self.losses``, typed: a ModuleList's items are plain modules to a type checker."""
        return cast("list[EmbeddingLoss]", list(self.losses))

    def check_layout(self, layout: BatchLayout) -> None:
        for i, loss in enumerate(self._terms):
            try:
                loss.check_layout(layout)
            except ConfigError as e:
                raise ConfigError(f"loss[{i}] ({loss.name}): {e}") from None

    @property
    def reads(self) -> frozenset[str]:
        out: set[str] = set()
        for loss in self._terms:
            out |= loss.reads
        return frozenset(out)

    def compute_loss_from_batch(self, batch: EmbeddingBatch) -> Tensor:
        batch.validate()
        total: Tensor | None = None
        terms: dict[str, Tensor] = {}
        for name, w, loss in zip(self.term_names, self.weights, self._terms, strict=True):
            if w == 0:  # a term switched off is not computed at all
                continue
            value = loss.compute_loss_from_batch(batch)
            terms[name] = value.detach()
            total = w * value if total is None else total + w * value
        assert total is not None
        self.last_terms = terms
        return total

    def compute_terms(self, batch: EmbeddingBatch) -> dict[str, Tensor]:
        """Every term's own terms, weighted, under the term's name: ``margin_mse``,
        ``contrastive``, ``listwise_kl_contrastive``, ``contrastive_2`` ..."""
        batch.validate()
        out: dict[str, Tensor] = {}
        self.last_terms = {}
        for name, w, loss in zip(self.term_names, self.weights, self._terms, strict=True):
            if w == 0:
                continue
            parts = loss.compute_terms(batch)
            for part, value in parts.items():
                out[name + part[len(loss.name) :]] = w * value
            # a tensor: every term computes at least one part
            self.last_terms[name] = cast(Tensor, sum(v.detach() for v in parts.values()))
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "terms": [
                {"loss": loss.name, "weight": w, **loss.get_config_dict()}
                for w, loss in zip(self.weights, self._terms, strict=True)
            ]
        }

    def extra_repr(self) -> str:
        return "weights=" + ", ".join(
            f"{n}:{w:g}" for n, w in zip(self.term_names, self.weights, strict=True)
        )

    @property
    def citation(self) -> str:
        seen: list[str] = []
        for loss in self._terms:
            for c in loss.citation.split("\n@"):
                c = c if c.startswith("@") else "@" + c
                if c.strip() != "@" and c not in seen:
                    seen.append(c)
        return "\n".join(seen)


__all__ = ["CombinedLoss"]
