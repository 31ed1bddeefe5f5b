"""``twotower run``: train, then evaluate BM25, the base and the trained model, and report."""

from __future__ import annotations

import gc
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from twotower.analysis import run_probe
from twotower.analysis.encode import tower_embeddings
from twotower.data.collection import load_collection
from twotower.data.files import atomic_write, read_manifest
from twotower.evaluation.evaluate import EvalResult, evaluate_dual, evaluate_systems
from twotower.evaluation.report import markdown_table
from twotower.models.build import build_model
from twotower.models.encoder import Encoder
from twotower.models.sharded_encoding import encode_corpus_sharded
from twotower.settings import is_main_process, world_size
from twotower.training.distributed import ensure_process_group
from twotower.training.pipeline import finished_model, train_recipe, write_recipe
from twotower.training.recipe import Recipe, recipe_to_yaml
from twotower.training.recipe_sections import ModelConfig
from twotower.training.report import (
    comparison_rows,
    markdown_comparison,
    refresh_section,
    synthetic_section,
)
from twotower.training.trainer import FINISHED

log = logging.getLogger(__name__)

BASE, TRAINED = "base", "trained"


def _base_encoder(config: ModelConfig, batch_size: int, device: str | None) -> Encoder:
    """The untrained model as the recipe would use it (its prompts and max length)."""

    model = build_model(
        config.name,
        max_length=config.max_document_length,
        query_prompt=config.query_prompt,
        document_prompt=config.document_prompt,
        device=device,
    )
    return Encoder(model, batch_size=batch_size, name=BASE)


def run_recipe(
    recipe: Recipe,
    run_dir: Path,
    *,
    resume: bool | None = None,
    device: str | None = None,
    probe: bool | None = None,
    retrain: bool = False,
) -> dict[str, Any]:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    model_dir = None if retrain else finished_model(run_dir, recipe)
    train_info: dict[str, Any] = {}
    if model_dir is not None:
        log.info(
            "%s already holds the model trained by this recipe; evaluating it (--retrain to train again)",
            run_dir,
        )
        done, _ = read_manifest(model_dir / FINISHED)  # checked by finished_model
        train_info = dict(done or {})
    else:
        if retrain and (run_dir / "model").exists():
            shutil.rmtree(run_dir / "model")
        outcome, data = train_recipe(
            recipe, run_dir, resume=False if retrain else resume, device=device
        )
        model_dir = outcome.model_dir
        train_info = {
            "steps": outcome.steps,
            "seconds": outcome.seconds,
            "examples": outcome.examples,
            "resumed_from": outcome.resumed_from,
            **data.info,
        }
    timings["train_s"] = time.perf_counter() - started
    # The trainer, its optimizer and the mining models are garbage in reference cycles (a
    # sentence-transformers model and its model card hold each other): freed before two more
    # models load for evaluation, not whenever the collector next runs.
    gc.collect()
    start = time.perf_counter()
    encoders = []
    if recipe.eval.base_model:
        encoders.append(_base_encoder(recipe.model, recipe.eval.batch_size, device))
    encoders.append(
        Encoder.from_name(
            str(model_dir), device=device, batch_size=recipe.eval.batch_size, name=TRAINED
        )
    )
    collections = [load_collection(name, recipe.eval.split) for name in recipe.eval.collections]
    if world_size() > 1:  # every rank encodes a slice of each corpus into rank 0's cache
        ensure_process_group(device)
        for collection in collections:
            for encoder in encoders:
                encode_corpus_sharded(encoder, collection.corpus)
    if not is_main_process():  # evaluation, the report and results are rank 0's
        return {"model_dir": str(model_dir), "train": train_info}
    write_recipe(recipe, run_dir)
    results: list[EvalResult] = []
    dual: list[EvalResult] = []
    for collection in collections:
        if "retrieval" in recipe.eval.tasks:
            results += evaluate_systems(
                collection,
                encoders=encoders,
                bm25=recipe.eval.bm25,
                metrics=recipe.eval.metrics,
                index=recipe.eval.index_settings(),
            )
        if "dual" in recipe.eval.tasks:
            dual += evaluate_dual(collection, encoders, metrics=recipe.eval.metrics)
    timings["eval_s"] = time.perf_counter() - start

    rows = comparison_rows(results, BASE, TRAINED) + [
        {**row, "data": f"{row['data']} (dual)"}
        for row in comparison_rows(dual, f"{BASE} (dual)", f"{TRAINED} (dual)")
    ]
    results += dual
    probe_md = ""
    if collections and (probe if probe is not None else recipe.eval.probe):
        start = time.perf_counter()
        probe_md = _probe(encoders, collections[0], run_dir / "probe")
        timings["probe_s"] = time.perf_counter() - start
    timings["total_s"] = time.perf_counter() - started
    payload = {
        "recipe": recipe.model_dump(mode="json"),
        "model_dir": str(model_dir),
        "train": train_info,
        "results": [r.to_json() for r in results],
        "comparison": rows,
        "timings": timings,
    }
    with atomic_write(run_dir / "results.json") as handle:
        handle.write(json.dumps(payload, indent=2, default=str) + "\n")
    with atomic_write(run_dir / "report.md") as handle:
        handle.write(
            _report(
                recipe,
                rows,
                results,
                train_info,
                timings,
                synthetic_section(train_info) + probe_md + refresh_section(run_dir),
            )
        )
    return payload


def _probe(encoders: list[Encoder], collection, output: Path) -> str:

    towers = [tower_embeddings(encoder, collection, encoder.name) for encoder in encoders]
    result = run_probe(
        towers,
        collection.qrels,
        output,
        exclude_same_id=collection.ids_are_shared(),
        data=collection.name,
        split=collection.split,
    )
    images = "\n".join(
        f"![{name}](probe/{name})" for name in sorted(result.files) if name.endswith(".png")
    )
    return f"## Embedding space ({collection.name} {collection.split})\n\n{result.summary_markdown()}\n\n{images}\n\nDetails: [probe/probe.md](probe/probe.md)\n"


def _report(recipe: Recipe, rows, results, train_info, timings, probe_md: str) -> str:
    minutes = timings["total_s"] / 60
    lines = [
        f"# {recipe.name}",
        "",
        recipe.description.strip(),
        "",
        f"Model `{recipe.model.name}` ({recipe.model.towers} towers), trained {train_info.get('steps', '?')} steps "
        f"on {train_info.get('examples', '?')} examples in {train_info.get('seconds', 0) / 60:.1f} min; "
        f"whole run {minutes:.1f} min.",
        "",
        "## Base → trained",
        "",
        markdown_comparison(rows),
        "",
        "## All systems",
        "",
        markdown_table(results),
        "",
        probe_md,
        "## Recipe",
        "",
        "```yaml",
        recipe_to_yaml(recipe).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
