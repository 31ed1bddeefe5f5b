"""A recipe end to end: examples (with mined negatives and teacher scores), training, evaluation."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twotower.data.collection import Collection, load_corpus
from twotower.data.files import atomic_write, read_manifest
from twotower.errors import ConfigError
from twotower.models.sharded_encoding import encode_corpus_sharded
from twotower.negatives.io import read_negatives
from twotower.negatives.mine import RankWindow, mine_negatives
from twotower.negatives.queries import mine_negative_queries
from twotower.negatives.retrievers import build_retriever
from twotower.settings import is_main_process, world_size
from twotower.teachers.normalize import keep_queries, normalize_percentile, percentile_bounds
from twotower.teachers.spec import build_teacher
from twotower.training.distributed import ensure_process_group, main_process_first
from twotower.training.examples import (
    examples_from_collection,
    examples_from_jsonl,
    query_key,
    training_collection,
)
from twotower.training.recipe import Recipe, recipe_to_yaml
from twotower.training.recipe_sections import ModelConfig, NegativesConfig, TeacherConfig
from twotower.training.rows import TrainingRows, documents_to_mine, queries_to_mine
from twotower.training.synthetic_step import ensure_synthetic_queries
from twotower.training.teacher_rows import teacher_scores_for
from twotower.training.trainer import FINISHED, train_model

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    rows: TrainingRows
    collection: Collection | None
    info: dict[str, Any] = field(default_factory=dict)


def _teacher(
    teacher: TeacherConfig, model: ModelConfig, collection: Collection | None, device: str | None
):

    if teacher.kind == "none":
        return None
    assert teacher.model is not None  # TeacherConfig: every other kind names its model
    return build_teacher(
        teacher.kind,
        teacher.model,
        collection=collection,
        alpha=teacher.alpha,
        device=device,
        # A dense teacher embeds documents as the run's retrievers do: one cached encoding.
        max_length=None if teacher.kind == "cross_encoder" else model.max_document_length,
    )


def _retriever(negatives: NegativesConfig, model: ModelConfig, source: str, device: str | None):

    name = None if source == "bm25" else (negatives.model or model.name)
    return build_retriever(
        source,
        name,
        alpha=negatives.alpha,
        device=device,
        index=negatives.index_settings(),
        max_length=model.max_document_length,  # one length, one cached encoding
    )


def _file_width(examples, count: int | None, info: dict[str, Any]) -> int:
    """Negatives per row of a triples file: ``count``, else the fewest of the rows that have any."""
    widths = [len(e.negatives) for e in examples if e.negatives]
    width = count if count is not None else (min(widths) if widths else 0)
    info["triples"] = {
        "negatives_per_row": width,
        "rows_with_negatives": len(widths),
        "widest_row": max(widths, default=0),
    }
    return width


def _mining_retriever(recipe: Recipe, device: str | None):
    """The dense or fused retriever the recipe mines with (hard negatives, or DANCE's negative
    queries where no other retriever mines), or None."""
    neg = recipe.negatives
    if recipe.train.pairs:
        return None
    if neg.source in ("dense", "fusion"):
        return _retriever(neg, recipe.model, neg.source, device)
    if neg.source in ("none", "file") and neg.negative_queries > 0:
        return _retriever(neg, recipe.model, "dense", device)
    return None


def encode_mining_corpus_across_ranks(recipe: Recipe, device: str | None):
    """Under torchrun, before rank 0 mines: every rank encodes a slice of the training corpus
    into rank 0's embedding cache (:func:`encode_corpus_sharded`), so mining encodes nothing.
    Returns the retriever to mine with (None where the recipe mines with none or BM25)."""
    if world_size() == 1:
        return None  # prepare_rows builds its retriever, freed when mining is done
    retriever = _mining_retriever(recipe, device)
    if retriever is not None:
        assert recipe.train.data is not None  # a retriever mines train.data's corpus
        ensure_process_group(device)
        encode_corpus_sharded(retriever.dense_encoder, load_corpus(recipe.train.data).corpus)
    return retriever


def prepare_rows(recipe: Recipe, *, device: str | None = None, retriever=None) -> PreparedData:
    """The training rows of the recipe: examples, negatives tables, teacher scores;
    ``retriever``: the one :func:`_mining_retriever` names, built already."""

    info: dict[str, Any] = {}
    started = time.perf_counter()
    neg = recipe.negatives
    collection = None
    documents = None
    if recipe.train.pairs:
        examples = examples_from_jsonl(recipe.train.pairs, recipe.train.max_examples)
        if neg.source != "none":
            raise ConfigError(
                "negatives.source mines from a collection: with train.pairs, put negatives in the file"
            )
        count = _file_width(examples, neg.count, info)
    else:
        collection = training_collection(recipe.train, info)
        examples = examples_from_collection(collection, recipe.train.max_examples)
        count = 0 if neg.source == "none" else (1 if neg.count is None else neg.count)
    teacher = _teacher(recipe.teacher, recipe.model, collection, device)
    if count > 0 and collection is not None:
        if neg.source == "file":  # mined earlier (twotower mine) or by another tool
            assert neg.file is not None  # NegativesConfig: source file goes with a file
            documents = read_negatives(neg.file, collection, kind="documents")
            info["negatives_file"] = {
                "file": neg.file,
                "queries": len(documents),
                "negatives": documents.total(),
            }
        else:
            retriever = retriever or _retriever(neg, recipe.model, neg.source, device)
            pool = documents_to_mine(count, frozen=not recipe.model.train_document_tower)
            documents, stats = mine_negatives(
                collection,
                retriever,
                window=RankWindow(*neg.rank_window),
                count=pool,
                seed=neg.seed,
                teacher=teacher if neg.false_negative_margin is not None else None,
                margin=neg.false_negative_margin,
            )
            info["mining"] = stats.to_json()
    queries = None
    if neg.negative_queries > 0:
        queries = _negative_queries(neg, recipe.model, collection, device, info, retriever)
    rows = TrainingRows(
        examples,
        collection,
        negatives=count,
        negative_queries=neg.negative_queries,
        seed=neg.seed,
        documents=documents,
        queries=queries,
        pool=not recipe.model.train_document_tower,
    )
    info["negatives_per_row"] = count
    info["negative_queries_per_row"] = neg.negative_queries
    info["examples_without_negatives"] = rows.dropped["negatives"]
    info["examples_without_negative_queries"] = rows.dropped["negative_queries"]
    if teacher is not None:
        _score_rows(recipe.teacher, rows, teacher, info)
    info["examples"] = len(rows)
    info["prepare_s"] = time.perf_counter() - started
    return PreparedData(rows, collection, info)


def _score_rows(config: TeacherConfig, rows: TrainingRows, teacher, info: dict[str, Any]) -> None:
    """Teacher scores of the rows as drawn now, then the optional weak-query filter and
    percentile normalisation (Tamber et al. 2025)."""
    drawn = [rows.drawn(i) for i in range(len(rows))]
    rows.teacher_scores = teacher_scores_for(teacher, drawn, rows.collection)
    keep = None
    if config.drop_below_percentile is not None:
        keep = weak_query_filter(rows, drawn, config.drop_below_percentile)
    if config.normalize:  # bounds over the whole collection, before dropping
        _normalise_teacher(rows, drawn, info)
    if keep is not None:
        before_queries = len({query_key(r.example) for r in drawn})
        dropped = rows.keep_queries(keep)
        info["weak_queries_dropped"] = before_queries - len(keep)
        info["weak_query_examples_dropped"] = dropped
        log.info(
            "dropped %d of %d queries whose best teacher score is below the %gth percentile",
            before_queries - len(keep),
            before_queries,
            config.drop_below_percentile,
        )


def _negative_queries(
    neg: NegativesConfig,
    model: ModelConfig,
    collection: Collection | None,
    device: str | None,
    info: dict[str, Any],
    retriever=None,
):
    """DANCE's negative queries (Li et al. 2021): for each positive document, the training
    queries its embedding retrieves (ranks ``negative_query_window``, never a query with the
    document as a positive), :func:`queries_to_mine` sampled per document,
    then M drawn per row. ``retriever``: the one that mined the hard negatives, if any (else
    ``negatives.source``, or dense with the model)."""

    if collection is None:
        raise ConfigError(
            "negatives.negative_queries mines a collection's training queries: set train.data"
        )
    if retriever is None:
        source = neg.source if neg.source not in ("none", "file") else "dense"
        retriever = _retriever(neg, model, source, device)
    table, stats = mine_negative_queries(
        collection,
        retriever,
        window=RankWindow(*neg.negative_query_window),
        count=queries_to_mine(neg.negative_queries),
        seed=neg.seed,
    )
    info["negative_query_mining"] = stats.to_json()
    return table


def weak_query_filter(rows: TrainingRows, drawn, percentile: float) -> set[str]:
    """The queries to keep (ids, or texts for id-less pairs): those whose best teacher score
    over their documents (positive and hard negatives, all of the query's rows) is not below
    the ``percentile``-th percentile of all those scores (:func:`keep_queries`, as Tamber et
    al. 2025's released code does)."""

    scores: dict[str, dict[str, float]] = {}
    for index, row in enumerate(drawn):
        documents = rows.teacher_row(row)[: 1 + len(row.negatives)]  # not T(q-, d+)
        per_query = scores.setdefault(query_key(row.example), {})
        for slot, score in enumerate(documents):
            per_query[f"{index}:{slot}"] = float(score)
    return set(keep_queries(scores, percentile))


def _normalise_teacher(rows: TrainingRows, drawn, info: dict[str, Any]) -> None:
    """Percentile min-max normalisation; bounds over every score of every row, as drawn."""

    flat = np.array([s for row in drawn for s in rows.teacher_row(row)], dtype=np.float64)
    bounds = percentile_bounds(flat)
    info["teacher_bounds"] = bounds
    assert rows.teacher_scores is not None
    keys = list(rows.teacher_scores)
    values = normalize_percentile([rows.teacher_scores[k] for k in keys], bounds)
    rows.teacher_scores = dict(zip(keys, map(float, values), strict=True))


def default_run_dir(recipe: Recipe) -> Path:
    return Path(recipe.output_dir or Path("runs") / recipe.name)


def write_recipe(recipe: Recipe, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(run_dir / "recipe.yaml") as handle:
        handle.write(recipe_to_yaml(recipe))


def finished_model(run_dir: Path, recipe: Recipe) -> Path | None:
    """The trained model of an earlier, completed run of the same recipe, if any."""

    saved = run_dir / "recipe.yaml"
    model_dir = run_dir / "model"
    if not (
        (model_dir / FINISHED).is_file()
        and saved.is_file()
        and saved.read_text() == recipe_to_yaml(recipe)
    ):
        return None
    _, problem = read_manifest(model_dir / FINISHED, complete=True)
    if problem is not None:
        log.warning("%s: %s; the model is trained again", model_dir, problem)
        return None
    return model_dir


def train_recipe(
    recipe: Recipe, run_dir: Path, *, resume: bool | None = None, device: str | None = None
):

    main = is_main_process()
    if main:
        write_recipe(recipe, run_dir)
    retriever = encode_mining_corpus_across_ranks(recipe, device)
    with main_process_first(device):  # rank 0 mines and scores; the others read its caches
        synthetic = ensure_synthetic_queries(recipe.synthetic, recipe.train, device=device)
        data = prepare_rows(recipe, device=device, retriever=retriever)
    del retriever  # its model is not needed while training
    if synthetic:
        data.info["synthetic_step"] = synthetic
    if main:
        with atomic_write(run_dir / "data.json") as handle:
            handle.write(json.dumps(data.info, indent=2, default=str) + "\n")
    log.info("training on %d examples", len(data.rows))
    return train_model(
        recipe, data.rows, run_dir, resume=resume, device=device, collection=data.collection
    ), data
