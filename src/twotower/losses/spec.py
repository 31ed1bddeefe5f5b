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
  d2d_own_hard_negatives, mask_false_negatives, in_batch_negatives.
* ``margin_mse`` — :class:`~twotower.losses.margin_mse.MarginMSELoss`: similarity, dual_weight,
  dual_negatives (mined | in_batch).
* ``listwise_kl`` — :class:`~twotower.losses.listwise.ListwiseKLLoss`: student_temperature,
  teacher_temperature, contrastive_weight, contrastive_temperature, near_top_ratio, similarity,
  temperature_squared_scaling.

``parse_loss_specs(entries)`` validates the list into frozen spec objects (one class per
``loss``); ``spec.model_dump(exclude_defaults=True)`` gives the entry back as a plain mapping, as
written in a recipe. ``build_loss(specs)`` takes such specs (or the raw mappings) and returns a
:class:`~twotower.losses.combined.CombinedLoss`. Validation problems are
:class:`twotower.errors.ConfigError` whose message starts with the entry's position, e.g.
``loss[1] (contrastive): temperature: ...``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from twotower.errors import ConfigError, did_you_mean
from twotower.losses.base import EmbeddingLoss
from twotower.losses.batch import BatchLayout
from twotower.losses.combined import CombinedLoss
from twotower.losses.contrastive import ContrastiveLoss
from twotower.losses.listwise import ListwiseKLLoss
from twotower.losses.margin_mse import MarginMSELoss
from twotower.losses.similarity import SimilarityName
from twotower.losses.softmax_groups import SoftmaxGroup


class _Spec(BaseModel):
    """One ``loss:`` entry: every field but ``loss`` and ``weight`` is an option of ``loss_class``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss_class: ClassVar[type[EmbeddingLoss]]
    # Checked by the loss constructors (finite, >= 0), so the message is the same either way.
    weight: float = 1.0

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``loss_class``."""
        return {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name not in ("loss", "weight")
        }

    def build(self, layout: BatchLayout | None = None) -> EmbeddingLoss:
        return self.loss_class(**self.options(), layout=layout)


class GroupSpec(BaseModel):
    """One softmax group: blocks sharing a denominator, and its weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Plain strings: the loss checks the names and suggests the nearest valid one.
    blocks: list[str]
    weight: float = 1.0


class ContrastiveSpec(_Spec):
    loss_class = ContrastiveLoss

    loss: Literal["contrastive"]
    preset: str | None = None
    directions: list[str] | None = None
    partition: str = "by_anchor"
    dual_weight: float = 1.0
    groups: list[GroupSpec] | None = None
    temperature: float = 0.05
    similarity: SimilarityName = "cosine"
    share_hard_negatives: bool = True
    share_negative_queries: bool = False
    d2d_own_hard_negatives: bool = False
    mask_false_negatives: bool = True
    in_batch_negatives: bool = True

    def options(self) -> dict[str, Any]:
        if self.partition != "by_anchor" and self.directions is None:
            raise ConfigError("partition: only applies together with directions")
        options = super().options()
        if self.groups is not None:
            options["groups"] = [SoftmaxGroup(tuple(g.blocks), g.weight) for g in self.groups]
        return options


class MarginMSESpec(_Spec):
    loss_class = MarginMSELoss

    loss: Literal["margin_mse"]
    similarity: SimilarityName = "dot"
    dual_weight: float = 0.0
    dual_negatives: Literal["mined", "in_batch"] = "mined"


class ListwiseSpec(_Spec):
    loss_class = ListwiseKLLoss

    loss: Literal["listwise_kl"]
    student_temperature: float = 0.05
    teacher_temperature: float = 0.3
    contrastive_weight: float = 0.1
    contrastive_temperature: float = 0.01
    near_top_ratio: float | None = 0.6
    similarity: SimilarityName = "cosine"
    temperature_squared_scaling: bool = False


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
        return ConfigError(
            f"{head}: unknown key {key!r}{did_you_mean(key, valid)}; valid keys: {valid}"
        )
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        valid = sorted(SPEC_TYPES)
        if kind == "union_tag_not_found":
            return ConfigError(f"{where}: missing key 'loss'; one of {valid}")
        return ConfigError(
            f"{where}: unknown loss {name!r}{did_you_mean(name, valid)}; valid: {valid}"
        )
    field = _loc(loc)
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        valid = [
            v.strip().strip("'\"")
            for v in str(expected).replace(" or ", ",").split(",")
            if v.strip()
        ]
        value = err.get("input")
        return ConfigError(
            f"{head}: {field}: {value!r} is not valid{did_you_mean(value, valid)}; valid: {valid}"
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
    out: list[LossSpec] = []
    for i, raw in enumerate(specs):
        if isinstance(raw, _Spec):
            out.append(cast(LossSpec, raw))  # built already: one of SPEC_TYPES
            continue
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"loss[{i}]: expected a mapping with a 'loss' key, got {raw!r}", key=("loss", i)
            )
        try:
            out.append(_ADAPTER.validate_python(dict(raw)))
        except ValidationError as e:
            raise ConfigError(str(_friendly(e, raw, f"loss[{i}]")), key=("loss", i)) from None
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
    return CombinedLoss(terms)


__all__ = [
    "ContrastiveSpec",
    "GroupSpec",
    "ListwiseSpec",
    "LossSpec",
    "MarginMSESpec",
    "build_loss",
    "parse_loss_specs",
]
