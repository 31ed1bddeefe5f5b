"""Losses declared as data: the ``loss:`` list of a recipe.

Each entry is one loss with its options and a ``weight``; the list is their weighted sum::

    loss:
      - {loss: margin_mse, weight: 1}
      - {loss: contrastive, directions: [q2d, d2q], weight: 0.5}     # MMSE + MNRL-Dual

Entries (``loss`` is the discriminator; unknown keys are errors naming the key and the nearest
valid one):

* ``contrastive`` — :class:`~twotower.losses.contrastive.ContrastiveLoss`. Declare the objective by
  one of ``preset`` (mnrl, mnrl_dual, samtone_query, samtone_both, gte_joint), ``directions`` (+
  ``partition``: by_anchor | joint, ``dual_weight``) or ``groups`` (``[{blocks: [q2d, q2q],
  weight: 1}, ...]``); plus temperature, similarity, share_hard_negatives, share_negative_queries,
  d2d_own_hard_negatives, mask_false_negatives.
* ``margin_mse`` — :class:`~twotower.losses.margin_mse.MarginMSELoss`: similarity, dual_weight,
  dual_negatives (mined | in_batch).
* ``listwise_kl`` — :class:`~twotower.losses.listwise.ListwiseKLLoss`: student_temperature,
  teacher_temperature, contrastive_weight, contrastive_temperature, near_top_ratio, similarity,
  temperature_squared_scaling.

``build_loss(specs)`` validates and returns a :class:`~twotower.losses.combined.CombinedLoss`.
Validation problems are :class:`twotower.errors.ConfigError` whose message starts with the entry's
position, e.g. ``loss[1] (contrastive): temperature: ...``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from twotower.errors import ConfigError
from twotower.losses.base import EmbeddingLoss
from twotower.losses.batch import BatchLayout
from twotower.losses.combined import CombinedLoss
from twotower.losses.contrastive import ContrastiveLoss, SoftmaxGroup
from twotower.losses.listwise import ListwiseKLLoss
from twotower.losses.margin_mse import MarginMSELoss

Similarity = Literal["cosine", "dot"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Checked by the loss constructors (finite, >= 0), so the message is the same either way.
    weight: float = 1.0

    def build(self, layout: BatchLayout | None = None) -> EmbeddingLoss:  # pragma: no cover
        raise NotImplementedError


class GroupSpec(BaseModel):
    """One softmax group: blocks sharing a denominator, and its weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Plain strings: the loss checks the names and suggests the nearest valid one.
    blocks: list[str]
    weight: float = 1.0


class ContrastiveSpec(_Spec):
    loss: Literal["contrastive"]
    preset: str | None = None
    directions: list[str] | None = None
    partition: str = "by_anchor"
    dual_weight: float = 1.0
    groups: list[GroupSpec] | None = None
    temperature: float = 0.05
    similarity: Similarity = "cosine"
    share_hard_negatives: bool = True
    share_negative_queries: bool = False
    d2d_own_hard_negatives: bool = False
    mask_false_negatives: bool = True

    def build(self, layout: BatchLayout | None = None) -> ContrastiveLoss:
        groups = None
        if self.groups is not None:
            groups = [SoftmaxGroup(tuple(g.blocks), g.weight) for g in self.groups]
        if self.partition != "by_anchor" and self.directions is None:
            raise ConfigError("partition: only applies together with directions")
        return ContrastiveLoss(
            groups,
            preset=self.preset,
            directions=self.directions,
            partition=self.partition,
            dual_weight=self.dual_weight,
            temperature=self.temperature,
            similarity=self.similarity,
            share_hard_negatives=self.share_hard_negatives,
            share_negative_queries=self.share_negative_queries,
            d2d_own_hard_negatives=self.d2d_own_hard_negatives,
            mask_false_negatives=self.mask_false_negatives,
            layout=layout,
        )


class MarginMSESpec(_Spec):
    loss: Literal["margin_mse"]
    similarity: Similarity = "dot"
    dual_weight: float = 0.0
    dual_negatives: Literal["mined", "in_batch"] = "mined"

    def build(self, layout: BatchLayout | None = None) -> MarginMSELoss:
        return MarginMSELoss(
            similarity=self.similarity,
            dual_weight=self.dual_weight,
            dual_negatives=self.dual_negatives,
            layout=layout,
        )


class ListwiseSpec(_Spec):
    loss: Literal["listwise_kl"]
    student_temperature: float = 0.05
    teacher_temperature: float = 0.3
    contrastive_weight: float = 0.1
    contrastive_temperature: float = 0.01
    near_top_ratio: float | None = 0.6
    similarity: Similarity = "cosine"
    temperature_squared_scaling: bool = False

    def build(self, layout: BatchLayout | None = None) -> ListwiseKLLoss:
        return ListwiseKLLoss(
            student_temperature=self.student_temperature,
            teacher_temperature=self.teacher_temperature,
            contrastive_weight=self.contrastive_weight,
            contrastive_temperature=self.contrastive_temperature,
            near_top_ratio=self.near_top_ratio,
            similarity=self.similarity,
            temperature_squared_scaling=self.temperature_squared_scaling,
            layout=layout,
        )


LossSpec = Annotated[ContrastiveSpec | MarginMSESpec | ListwiseSpec, Field(discriminator="loss")]
SPEC_TYPES: dict[str, type[_Spec]] = {
    "contrastive": ContrastiveSpec,
    "margin_mse": MarginMSESpec,
    "listwise_kl": ListwiseSpec,
}
_ADAPTER: TypeAdapter = TypeAdapter(LossSpec)


def _loc(loc: tuple) -> str:
    # pydantic puts the union tag in the location (e.g. ('contrastive', 'groups', 0, 'blocks'))
    parts = [str(p) for p in loc if p not in SPEC_TYPES]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out


def _friendly(e: ValidationError, raw: Any, where: str) -> ConfigError:
    """First pydantic error as one line, with a 'did you mean' for unknown keys and values."""
    err = e.errors()[0]
    kind, loc = err["type"], tuple(err["loc"])
    name = raw.get("loss") if isinstance(raw, Mapping) else None
    head = f"{where} ({name})" if isinstance(name, str) and name in SPEC_TYPES else where
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model: type[BaseModel] = SPEC_TYPES.get(name, _Spec) if isinstance(name, str) else _Spec
        if "groups" in loc:
            model = GroupSpec
        valid = sorted(model.model_fields)
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ConfigError(f"{head}: unknown key {key!r}{hint}; valid keys: {valid}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        valid = sorted(SPEC_TYPES)
        if kind == "union_tag_not_found":
            return ConfigError(f"{where}: missing key 'loss'; one of {valid}")
        close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ConfigError(f"{where}: unknown loss {name!r}{hint}; valid: {valid}")
    field = _loc(loc)
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        valid = [
            v.strip().strip("'\"")
            for v in str(expected).replace(" or ", ",").split(",")
            if v.strip()
        ]
        close = difflib.get_close_matches(str(err.get("input")), valid, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ConfigError(
            f"{head}: {field}: {err.get('input')!r} is not valid{hint}; valid: {valid}"
        )
    return ConfigError(f"{head}: {field}: {err['msg']} (got {err.get('input')!r})")


def parse_loss_specs(specs: Any) -> list[LossSpec]:
    """Validate a ``loss:`` value (a list of mappings / specs, or one of them) into spec objects."""
    if isinstance(specs, (Mapping, _Spec)):
        specs = [specs]
    if not isinstance(specs, Sequence) or isinstance(specs, (str, bytes)):
        raise ConfigError(f"loss: expected a list of loss entries, got {type(specs).__name__}")
    if not specs:
        raise ConfigError("loss: the list is empty; give at least one loss entry")
    out = []
    for i, raw in enumerate(specs):
        if isinstance(raw, _Spec):
            out.append(raw)
            continue
        if not isinstance(raw, Mapping):
            raise ConfigError(f"loss[{i}]: expected a mapping with a 'loss' key, got {raw!r}")
        try:
            out.append(_ADAPTER.validate_python(dict(raw)))
        except ValidationError as e:
            raise _friendly(e, raw, f"loss[{i}]") from None
    return out


def build_loss(specs: Any, *, layout: BatchLayout | None = None) -> CombinedLoss:
    """Build the weighted sum of the declared losses (see the module docstring).

    ``specs``: a list of mappings or spec objects (one is accepted too). ``layout``: what the
    batches will contain; when given, impossible combinations are refused now.
    """
    parsed = parse_loss_specs(specs)
    terms = []
    for i, spec in enumerate(parsed):
        try:
            loss = spec.build(layout)
        except ConfigError as e:
            raise ConfigError(f"loss[{i}] ({spec.loss}): {e}") from None
        terms.append((spec.weight, loss))
    try:
        return CombinedLoss(terms)
    except ConfigError as e:
        raise ConfigError(str(e)) from None


__all__ = [
    "ContrastiveSpec",
    "GroupSpec",
    "ListwiseSpec",
    "LossSpec",
    "MarginMSESpec",
    "build_loss",
    "parse_loss_specs",
]
