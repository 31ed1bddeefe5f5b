"""A recipe end to end: examples (with mined negatives and teacher scores), training, evaluation."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twotower.data.collection import Collection, load_collection
from twotower.training.examples import (
    Example,
    attach_negative_pool,
    attach_negative_queries,
    attach_negatives,
    attach_teacher_scores,
    examples_from_collection,
    examples_from_jsonl,
)
from twotower.training.recipe import Recipe, recipe_to_yaml

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    examples: list[Example]
    collection: Collection | None
    info: dict[str, Any] = field(default_factory=dict)


def _teacher(recipe: Recipe, collection: Collection | None, device: str | None):
    from twotower.teachers.spec import load_teacher

    if recipe.teacher.kind == "none":
        return None
    return load_teacher(
        f"{recipe.teacher.kind}:{recipe.teacher.model}",
        collection=collection,
        alpha=recipe.teacher.alpha,
        device=device,
    )


def training_collection(recipe: Recipe, info: dict[str, Any] | None = None) -> Collection:
    """The collection whose queries train: ``train.data``'s split, its corpus with synthetic
    queries, or both."""
    from twotower.data.collection import load_corpus
    from twotower.data.synthetic import load_synthetic_queries

    train = recipe.train
    if not train.synthetic_queries:
        return load_collection(train.data, train.split)
    base = (
        load_collection(train.data, train.split) if train.include_split else load_corpus(train.data)
    )
    collection, types = load_synthetic_queries(
        train.synthetic_queries, base, types=train.query_types, include_split=train.include_split
    )
    if info is not None:
        info["synthetic_queries"] = {
            "file": train.synthetic_queries,
            "types": types,
            "labelled_queries": len(base.queries),
        }
    return collection


def prepare_examples(recipe: Recipe, *, device: str | None = None) -> PreparedData:
    """Training rows of the recipe: pairs, sampled hard negatives, teacher scores."""
    from twotower.negatives.mine import RankWindow, mine_negatives
    from twotower.negatives.retrievers import make_retriever

    info: dict[str, Any] = {}
    started = time.perf_counter()
    collection = None
    if recipe.train.pairs:
        examples = examples_from_jsonl(recipe.train.pairs, recipe.train.max_examples)
        if recipe.negatives.source != "none":
            from twotower.errors import ConfigError

            raise ConfigError(
                "negatives.source mines from a collection: with train.pairs, put negatives in the file"
            )
    else:
        collection = training_collection(recipe, info)
        examples = examples_from_collection(collection, recipe.train.max_examples)
    teacher = _teacher(recipe, collection, device)
    neg = recipe.negatives
    retriever = None
    if neg.source != "none" and neg.count > 0 and collection is not None:
        if neg.source == "file":  # mined earlier (twotower mine) or by another tool
            from twotower.negatives.io import read_negatives

            table = read_negatives(neg.file, collection, kind="documents")
            info["negatives_file"] = {
                "file": neg.file,
                "queries": len(table),
                "negatives": table.total(),
            }
        else:
            model = None if neg.source == "bm25" else (neg.model or recipe.model.name)
            retriever = make_retriever(neg.source, model, alpha=recipe.teacher.alpha, device=device)
            # A pool several times larger than needed, so each example of a query draws its own
            # (a frozen index takes the whole pool).
            pool = 4 * neg.count if recipe.model.train_document_tower else neg.count
            table, stats = mine_negatives(
                collection,
                retriever,
                window=RankWindow(*neg.rank_window),
                count=pool,
                seed=neg.seed,
                teacher=teacher if neg.false_negative_margin is not None else None,
                margin=neg.false_negative_margin,
            )
            info["mining"] = stats.to_json()
        if recipe.model.train_document_tower:
            missing = attach_negatives(examples, table, collection, neg.count, neg.seed)
        else:
            missing = attach_negative_pool(examples, table, collection, neg.count)
        info["examples_without_negatives"] = missing
    if neg.negative_queries > 0:
        _attach_negative_queries(recipe, examples, collection, device, info, retriever)
    if teacher is not None:
        attach_teacher_scores(examples, teacher.score_pairs)
        keep = None
        if recipe.teacher.drop_below_percentile is not None:
            keep = weak_query_filter(examples, recipe.teacher.drop_below_percentile)
        if recipe.teacher.normalize:
            _normalise_teacher(examples, info)  # bounds over the whole collection, before dropping
        if keep is not None:
            before_queries = len({_query_key(e) for e in examples})
            before = len(examples)
            examples = [e for e in examples if _query_key(e) in keep]
            info["weak_queries_dropped"] = before_queries - len(keep)
            info["weak_query_examples_dropped"] = before - len(examples)
            log.info(
                "dropped %d of %d queries whose best teacher score is below the %gth percentile",
                before_queries - len(keep),
                before_queries,
                recipe.teacher.drop_below_percentile,
            )
    info["examples"] = len(examples)
    info["prepare_s"] = time.perf_counter() - started
    return PreparedData(examples, collection, info)


def _attach_negative_queries(
    recipe: Recipe,
    examples: list[Example],
    collection: Collection | None,
    device: str | None,
    info: dict[str, Any],
    retriever=None,
) -> None:
    """DANCE negative queries (METHODS §2): for each positive document, the training queries its
    embedding retrieves (ranks ``negative_query_window``, never a query with the document as a
    positive), 20 sampled per document (or M if more), then M per example. ``retriever``: the one
    that mined the hard negatives, if any (else ``negatives.source``, or dense with the model)."""
    from twotower.errors import ConfigError
    from twotower.negatives.mine import RankWindow
    from twotower.negatives.queries import mine_negative_queries
    from twotower.negatives.retrievers import make_retriever

    neg = recipe.negatives
    if collection is None:
        raise ConfigError(
            "negatives.negative_queries mines a collection's training queries: set train.data"
        )
    if retriever is None:
        source = neg.source if neg.source not in ("none", "file") else "dense"
        model = None if source == "bm25" else (neg.model or recipe.model.name)
        retriever = make_retriever(source, model, alpha=recipe.teacher.alpha, device=device)
    table, stats = mine_negative_queries(
        collection,
        retriever,
        window=RankWindow(*neg.negative_query_window),
        count=max(20, neg.negative_queries),
        seed=neg.seed,
    )
    info["negative_query_mining"] = stats.to_json()
    info["examples_without_negative_queries"] = attach_negative_queries(
        examples, table, collection, neg.negative_queries, neg.seed
    )


def _query_key(example: Example) -> str:
    return example.query_id if example.query_id is not None else example.query


def weak_query_filter(examples: list[Example], percentile: float) -> set[str]:
    """The queries to keep (ids, or texts for id-less pairs): those whose best teacher score over
    their documents (positive and hard negatives, all of the query's examples) is not below the
    ``percentile``-th percentile of the queries' best scores (Tamber et al. 2025; METHODS §5)."""
    from twotower.teachers.normalize import keep_queries

    scores: dict[str, dict[str, float]] = {}
    for index, example in enumerate(examples):
        documents = (example.teacher or [])[: 1 + len(example.negatives)]  # not T(q-, d+)
        per_query = scores.setdefault(_query_key(example), {})
        for slot, score in enumerate(documents):
            per_query[f"{index}:{slot}"] = float(score)
    return set(keep_queries(scores, percentile))


def _normalise_teacher(examples: list[Example], info: dict[str, Any]) -> None:
    from twotower.teachers.normalize import normalize_percentile, percentile_bounds

    flat = np.array([s for e in examples for s in (e.teacher or [])], dtype=np.float64)
    bounds = percentile_bounds(flat)
    info["teacher_bounds"] = bounds
    for example in examples:
        if example.teacher is not None:
            example.teacher = normalize_percentile(example.teacher, bounds).tolist()


def default_run_dir(recipe: Recipe) -> Path:
    return Path(recipe.output_dir or Path("runs") / recipe.name)


def write_recipe(recipe: Recipe, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(recipe_to_yaml(recipe))


def finished_model(run_dir: Path, recipe: Recipe) -> Path | None:
    """The trained model of an earlier, completed run of the same recipe, if any."""
    from twotower.training.trainer import FINISHED

    saved = run_dir / "recipe.yaml"
    model_dir = run_dir / "model"
    if (
        (model_dir / FINISHED).is_file()
        and saved.is_file()
        and saved.read_text() == recipe_to_yaml(recipe)
    ):
        return model_dir
    return None


def train_recipe(
    recipe: Recipe, run_dir: Path, *, resume: bool | None = None, device: str | None = None
):
    from twotower.training.trainer import train_model

    write_recipe(recipe, run_dir)
    data = prepare_examples(recipe, device=device)
    (run_dir / "data.json").write_text(json.dumps(data.info, indent=2, default=str) + "\n")
    log.info("training on %d examples", len(data.examples))
    return train_model(
        recipe, data.examples, run_dir, resume=resume, device=device, collection=data.collection
    ), data
