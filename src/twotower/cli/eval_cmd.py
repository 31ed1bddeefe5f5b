"""``twotower eval``: BM25, dense models and their fusion on a BEIR collection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from twotower.cli.common import (
    AlphaOpt,
    BatchSizeOpt,
    DataDirOpt,
    DeviceOpt,
    MaxLengthOpt,
    user_errors,
    write_json,
)
from twotower.cli.index_options import (
    HnswNeighborsOpt,
    IndexOpt,
    IvfListsOpt,
    IvfProbeOpt,
    index_settings,
)
from twotower.data import load_collection
from twotower.evaluation import DEFAULT_METRICS, evaluate_dual, evaluate_systems
from twotower.evaluation.metrics import parse_metric
from twotower.evaluation.report import print_results
from twotower.models import Encoder
from twotower.models.resolve import resolve_model


@user_errors
def eval_command(
    model: Annotated[
        list[str],
        typer.Option("--model", "-m", help="bm25, a model name, or a model folder; repeatable"),
    ],
    data: Annotated[
        list[str], typer.Option("--data", "-d", help="collection name or folder; repeatable")
    ],
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write results JSON here")
    ] = None,
    fusion: Annotated[
        Literal["linear", "rrf"] | None,
        typer.Option(help="also fuse each dense model with BM25: linear or rrf"),
    ] = None,
    alpha: AlphaOpt = 0.5,
    batch_size: BatchSizeOpt = 64,
    max_length: MaxLengthOpt = None,
    precision: Annotated[
        Literal["auto", "bf16", "fp32"],
        typer.Option(help="auto (bf16 where the CPU or GPU has it), bf16 or fp32"),
    ] = "auto",
    metrics: Annotated[str, typer.Option(help="comma-separated metrics")] = ",".join(
        DEFAULT_METRICS
    ),
    data_dir: DataDirOpt = None,
    ignore_identical_ids: Annotated[
        bool | None,
        typer.Option(
            "--ignore-identical-ids/--keep-identical-ids",
            help="drop a retrieved document whose id is the query's (default: on when queries are corpus documents)",
        ),
    ] = None,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="reuse cached corpus embeddings")
    ] = True,
    device: DeviceOpt = None,
    task: Annotated[
        Literal["retrieval", "dual"],
        typer.Option(
            help="retrieval (queries rank documents) or dual (DANCE: relevant documents rank the"
            " split's queries; dense models only)"
        ),
    ] = "retrieval",
    index: IndexOpt = "exact",
    ivf_lists: IvfListsOpt = None,
    ivf_probe: IvfProbeOpt = 16,
    hnsw_neighbors: HnswNeighborsOpt = 32,
) -> None:
    """Evaluate retrievers with trec_eval metrics (pytrec_eval) on judged queries."""
    metric_list = [m.strip() for m in metrics.split(",") if m.strip()]
    for name in metric_list:
        parse_metric(name)
    if task == "dual" and (fusion or any(m.lower() == "bm25" for m in model)):
        raise typer.BadParameter("the dual task takes dense models only", param_hint="--task")
    search = index_settings(index, ivf_lists, ivf_probe, hnsw_neighbors)
    if task == "dual" and search.type != "exact":
        raise typer.BadParameter("the dual task searches exactly", param_hint="--index")
    dense_names = [m for m in model if m.lower() != "bm25"]
    want_bm25 = len(dense_names) < len(model)
    started = time.perf_counter()
    encoders = [
        Encoder.from_name(
            name, device=device, batch_size=batch_size, max_length=max_length, precision=precision
        )
        for name in dense_names
    ]
    results = []
    for name in data:
        collection = load_collection(name, split, data_dir)
        if task == "dual":
            results += evaluate_dual(collection, encoders, metrics=metric_list, use_cache=cache)
            continue
        results += evaluate_systems(
            collection,
            encoders=encoders,
            bm25=want_bm25,
            fusion=fusion,
            alpha=alpha,
            metrics=metric_list,
            ignore_identical_ids=ignore_identical_ids,
            use_cache=cache,
            index=search,
        )
    Console().print()
    print_results(results, Console())
    if output:
        resolved = {name: resolve_model(name) for name in dense_names}
        write_json(
            output,
            {
                "results": [r.to_json() for r in results],
                "models": resolved,
                "wall_s": time.perf_counter() - started,
            },
        )
        Console(stderr=True).print(f"wrote {output}")
