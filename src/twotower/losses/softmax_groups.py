r"""Softmax groups: which candidate blocks share one softmax denominator, and with what weight.

A contrastive objective is declared as a list of groups; each group is a set of *blocks* (anchor →
candidates; the first letter is the anchor's tower):

* ``q2d``  q_i → documents: the batch's positives d_j (d_i is the positive) and hard negatives.
  P(d | q), MNRL (Henderson et al. 2017) / InfoNCE (van den Oord et al. 2018).
* ``d2q``  d_i → queries: the batch's queries q_j (q_i is the positive) and d_i's mined negative
  queries q_i^-(m). P(q | d), the dual objective of DANCE (Li et al. 2021).
* ``q2q``  q_i → the other queries q_j, j ≠ i. SamToNe query side (Moiseev et al. 2023).
* ``d2d``  d_i → the other documents d_j, j ≠ i (and other rows' hard negatives). SamToNe
  document side.

Presets (``dual_weight`` = λ):

=================  ==============================================  ===========================
preset             groups                                          source
=================  ==============================================  ===========================
``mnrl``           [q2d]                                           InfoNCE / MNRL
``mnrl_dual``      [q2d] + λ·[d2q]                                 DANCE (Li et al. 2021)
``samtone_query``  [q2d, q2q]                                      SamToNe, query side
``samtone_both``   [q2d, q2q] + λ·[d2q, d2d]  (two softmaxes, SUM)  SamToNe bidirectional
``gte_joint``      [q2d, q2q, d2q, d2d]       (one softmax)         GTE (Li et al. 2023)
=================  ==============================================  ===========================

A group must contain ``q2d`` or ``d2q``: only those blocks hold the positive pair. A group holding
both (GTE joint) counts e^{s(q_i,d_i)/τ} twice in its denominator, exactly as GTE's formula
Z = Σ_j e^{s(q_i,d_j)} + Σ_{j≠i} e^{s(q_i,q_j)} + Σ_j e^{s(q_j,d_i)} + Σ_{j≠i} e^{s(d_j,d_i)} and
sentence-transformers' ``partition_mode='joint'`` do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twotower.errors import ConfigError, did_you_mean
from twotower.losses.base import check_weight

BLOCKS: tuple[str, ...] = ("q2d", "d2q", "q2q", "d2d")
# sentence-transformers' direction names are accepted too.
BLOCK_ALIASES: dict[str, str] = {
    "query_to_doc": "q2d",
    "doc_to_query": "d2q",
    "query_to_query": "q2q",
    "doc_to_doc": "d2d",
}
QUERY_SIDE: tuple[str, ...] = ("q2d", "q2q")
DOCUMENT_SIDE: tuple[str, ...] = ("d2q", "d2d")
PRESETS: tuple[str, ...] = ("mnrl", "mnrl_dual", "samtone_query", "samtone_both", "gte_joint")
PARTITIONS: tuple[str, ...] = ("joint", "by_anchor")


@dataclass(frozen=True)
class SoftmaxGroup:
    """Blocks sharing one softmax denominator, and the weight of that cross-entropy term."""

    blocks: tuple[str, ...]
    weight: float = 1.0

    def describe(self) -> str:
        return f"{self.weight:g}*[{', '.join(self.blocks)}]"


def canonical_block(name: str, option: str = "directions") -> str:
    """``name`` as one of :data:`BLOCKS` (sentence-transformers' direction names map onto them)."""
    if name in BLOCKS:
        return name
    if name in BLOCK_ALIASES:
        return BLOCK_ALIASES[name]
    hint = did_you_mean(name, list(BLOCKS) + list(BLOCK_ALIASES))
    raise ConfigError(
        f"{option}: unknown direction {name!r}{hint}; valid: {list(BLOCKS)}"
        f" (or {list(BLOCK_ALIASES)})"
    )


def preset_groups(preset: str, dual_weight: float = 1.0) -> tuple[SoftmaxGroup, ...]:
    """The softmax groups of a named preset (λ = ``dual_weight`` weighs the document side)."""
    table = {
        "mnrl": (SoftmaxGroup(("q2d",)),),
        "mnrl_dual": (SoftmaxGroup(("q2d",)), SoftmaxGroup(("d2q",), dual_weight)),
        "samtone_query": (SoftmaxGroup(("q2d", "q2q")),),
        "samtone_both": (SoftmaxGroup(("q2d", "q2q")), SoftmaxGroup(("d2q", "d2d"), dual_weight)),
        "gte_joint": (SoftmaxGroup(("q2d", "q2q", "d2q", "d2d")),),
    }
    if preset not in table:
        raise ConfigError(
            f"preset: unknown preset {preset!r}{did_you_mean(preset, PRESETS)};"
            f" valid: {list(PRESETS)}"
        )
    return table[preset]


def direction_groups(
    directions: Sequence[str], partition: str = "by_anchor", dual_weight: float = 1.0
) -> tuple[SoftmaxGroup, ...]:
    """Groups from a flat list of directions.

    ``partition='joint'``: one softmax over all blocks (GTE). ``'by_anchor'``: one softmax per
    anchor tower, query side [q2d, q2q] + λ·document side [d2q, d2d], summed (SamToNe / DANCE).
    """
    if partition not in PARTITIONS:
        raise ConfigError(
            f"partition: unknown value {partition!r}{did_you_mean(partition, PARTITIONS)};"
            f" valid: {list(PARTITIONS)}"
        )
    if not directions:
        raise ConfigError("directions: at least one direction is required")
    blocks = [canonical_block(d) for d in directions]
    dupes = sorted({b for b in blocks if blocks.count(b) > 1})
    if dupes:
        raise ConfigError(f"directions: {dupes} listed more than once")
    ordered = tuple(b for b in BLOCKS if b in blocks)
    if partition == "joint":
        return (SoftmaxGroup(ordered),)
    groups = []
    q_side = tuple(b for b in ordered if b in QUERY_SIDE)
    d_side = tuple(b for b in ordered if b in DOCUMENT_SIDE)
    if q_side:
        groups.append(SoftmaxGroup(q_side))
    if d_side:
        groups.append(SoftmaxGroup(d_side, dual_weight))
    return tuple(groups)


def explicit_groups(
    groups: Sequence[SoftmaxGroup | tuple[Sequence[str], float]],
) -> tuple[SoftmaxGroup, ...]:
    """Groups given one by one (``(blocks, weight)`` tuples accepted), with canonical block names."""
    if not groups:
        raise ConfigError("groups: at least one softmax group is required")
    resolved = []
    for gi, g in enumerate(groups):
        if not isinstance(g, SoftmaxGroup):
            blocks, weight = g
            g = SoftmaxGroup(tuple(blocks), weight)
        blocks = tuple(canonical_block(b, f"groups[{gi}].blocks") for b in g.blocks)
        if not blocks:
            raise ConfigError(f"groups[{gi}].blocks: a group needs at least one block")
        if len(set(blocks)) != len(blocks):
            raise ConfigError(f"groups[{gi}].blocks: a block is listed twice in {list(blocks)}")
        resolved.append(SoftmaxGroup(blocks, check_weight(g.weight, f"groups[{gi}].weight")))
    return tuple(resolved)


def resolve_groups(
    groups: Sequence[SoftmaxGroup | tuple[Sequence[str], float]] | None = None,
    *,
    preset: str | None = None,
    directions: Sequence[str] | None = None,
    partition: str = "by_anchor",
    dual_weight: float = 1.0,
) -> tuple[SoftmaxGroup, ...]:
    """The groups of an objective declared by one of ``groups``, ``preset`` or ``directions``.

    None of them means ``preset='mnrl'``. Refuses a group that cannot hold the positive pair and
    an objective whose weights are all 0.
    """
    given = [
        k
        for k, v in (("groups", groups), ("preset", preset), ("directions", directions))
        if v is not None
    ]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)}: give only one way to declare the objective")
    dual_weight = check_weight(dual_weight, "dual_weight")
    if groups is not None:
        resolved = explicit_groups(groups)
    elif directions is not None:
        resolved = direction_groups(directions, partition, dual_weight)
    else:
        resolved = preset_groups(preset or "mnrl", dual_weight)
    for gi, g in enumerate(resolved):
        if "q2d" not in g.blocks and "d2q" not in g.blocks:
            side = "document-side" if set(g.blocks) <= set(DOCUMENT_SIDE) else "query-side"
            hint = "add d2q" if side == "document-side" else "add q2d"
            raise ConfigError(
                f"groups[{gi}] {g.describe()}: this {side} softmax has neither q2d nor d2q, so it"
                f" never contains the positive pair s(q_i, d_i); {hint} or use partition='joint'"
            )
    if all(g.weight == 0 for g in resolved):
        raise ConfigError("weight: every softmax group has weight 0, the loss would be constant")
    return resolved


__all__ = [
    "BLOCKS",
    "BLOCK_ALIASES",
    "DOCUMENT_SIDE",
    "PARTITIONS",
    "PRESETS",
    "QUERY_SIDE",
    "SoftmaxGroup",
    "canonical_block",
    "direction_groups",
    "explicit_groups",
    "preset_groups",
    "resolve_groups",
]
