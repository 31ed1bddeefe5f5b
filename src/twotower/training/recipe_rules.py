"""The rules of a recipe that read more than one section, in one place.

Each broken rule raises a :class:`~twotower.errors.ConfigError` with the key it is about as data
(``key``), so the message can point at that key's line in the recipe file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twotower.errors import ConfigError
from twotower.losses.spec import build_loss

if TYPE_CHECKING:
    from twotower.training.recipe import Recipe


def _broken(key: str, message: str) -> ConfigError:
    """A rule across sections, broken: ``key`` (dotted, e.g. ``refresh.mode``) is the key it
    names first; a ValueError, so that pydantic reports it as the recipe's validation error."""
    return ConfigError(message, key=tuple(key.split(".")))


def check_recipe(recipe: Recipe) -> None:
    """Every rule across sections, in one place; a broken rule raises ConfigError with its key."""
    if recipe.negatives.false_negative_margin is not None and recipe.teacher.kind == "none":
        raise _broken(
            "negatives.false_negative_margin",
            "negatives.false_negative_margin filters by teacher score: set teacher.kind and teacher.model",
        )
    needs_teacher = {spec.loss for spec in recipe.loss} & {"margin_mse", "listwise_kl"}
    if needs_teacher and recipe.teacher.kind == "none":
        raise _broken(
            "loss",
            f"loss {sorted(needs_teacher)} needs teacher scores: set teacher.kind and teacher.model",
        )
    no_negatives = recipe.negatives.source == "none" and not recipe.train.pairs
    if "margin_mse" in needs_teacher and (recipe.negatives.count == 0 or no_negatives):
        raise _broken(
            "loss",
            "loss margin_mse needs hard negatives: set negatives.source and negatives.count >= 1",
        )
    if recipe.teacher.drop_below_percentile is not None and recipe.teacher.kind == "none":
        raise _broken(
            "teacher.drop_below_percentile",
            "teacher.drop_below_percentile filters queries by teacher score: set teacher.kind and teacher.model",
        )
    if recipe.optim.mini_batch_size is not None and not recipe.model.train_document_tower:
        raise _broken(
            "optim.mini_batch_size",
            "optim.mini_batch_size (gradient caching) is for training both towers; with a frozen"
            " document tower only queries are encoded and a large batch already fits",
        )
    _check_negative_queries(recipe)
    _check_refresh(recipe)
    if recipe.synthetic.generator and not recipe.train.synthetic_queries:
        raise _broken(
            "synthetic.generator",
            "synthetic.generator: it writes train.synthetic_queries; set that to the file to write",
        )


def _check_refresh(recipe: Recipe) -> None:
    refresh, negatives = recipe.refresh, recipe.negatives
    if refresh.mode == "off":
        return
    if not recipe.train.data or recipe.train.pairs:
        raise _broken(
            "refresh.mode",
            "refresh.mode: a round re-mines a collection's corpus: set train.data, not train.pairs",
        )
    if negatives.source in ("none", "file") and negatives.count != 0:
        raise _broken(
            "refresh.mode",
            "refresh.mode: the first negatives come from mining: set negatives.source"
            " (bm25, dense or fusion; ANCE starts from BM25)",
        )
    if negatives.count == 0 and negatives.negative_queries == 0:
        raise _broken(
            "refresh.mode",
            "refresh.mode: nothing to refresh (negatives.count and negative_queries are 0)",
        )
    if {spec.loss for spec in recipe.loss} & {"margin_mse", "listwise_kl"}:
        raise _broken(
            "refresh.mode",
            "refresh.mode: a teacher loss is not supported with refresh yet: a round would need the"
            " teacher's scores of its new negatives",
        )
    if recipe.model.document_adapter:
        raise _broken(
            "refresh.mode",
            "refresh.mode: a round searches the frozen index without the document adapter; unset"
            " model.document_adapter or refresh (not supported together yet)",
        )
    if negatives.false_negative_margin is not None:
        raise _broken(
            "refresh.mode",
            "refresh.mode: negatives.false_negative_margin is not applied to refreshed negatives"
            " yet (a round would need the teacher's scores of its candidates); unset one of them",
        )
    window = refresh.rank_window or negatives.rank_window
    if window[1] > refresh.depth:
        raise _broken(
            "refresh.rank_window",
            f"refresh.rank_window ends at rank {window[1]}, deeper than refresh.depth"
            f" ({refresh.depth})",
        )


def _check_negative_queries(recipe: Recipe) -> None:
    for spec in recipe.loss:
        if spec.loss != "margin_mse" or spec.dual_weight <= 0:
            continue
        if spec.dual_negatives == "in_batch":
            raise _broken(
                "loss",
                "loss margin_mse with dual_negatives: in_batch needs teacher scores for every (query, document)"
                " pair of a batch, which training does not compute; use dual_negatives: mined with"
                " negatives.negative_queries >= 1",
            )
        if recipe.negatives.negative_queries < 1:
            raise _broken(
                "loss",
                "loss margin_mse with dual_weight > 0 (dual_negatives: mined) needs mined negative queries:"
                " set negatives.negative_queries >= 1",
            )
    m = recipe.negatives.negative_queries
    if m == 0:
        return
    try:
        reads = build_loss(recipe.loss).reads
    except ConfigError as exc:
        raise _broken("loss", str(exc)) from None
    if "negative_queries" not in reads:
        raise _broken(
            "negatives.negative_queries",
            f"negatives.negative_queries: {m}, but no loss reads negative queries; they need a contrastive"
            " d2q block (preset mnrl_dual or samtone_both, or directions with d2q) or margin_mse with"
            " dual_weight > 0 — or set negatives.negative_queries: 0",
        )
    if not recipe.model.train_document_tower:
        raise _broken(
            "negatives.negative_queries",
            "negatives.negative_queries needs the document tower to train (model.train_document_tower: true)",
        )
    if recipe.train.pairs:
        raise _broken(
            "negatives.negative_queries",
            "negatives.negative_queries mines from a collection's queries: use train.data, not train.pairs",
        )
