"""``twotower filter``: round-trip filtering of generated queries (twotower.generation.roundtrip)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from twotower.cli.common import (
    BatchSizeOpt,
    DataDirOpt,
    DeviceOpt,
    MaxLengthOpt,
    user_errors,
    write_json,
)
from twotower.data.collection import load_corpus
from twotower.errors import ConfigError, check_percentile
from twotower.generation.roundtrip import filter_file
from twotower.negatives.retrievers import build_retriever, parse_retriever_spec

DEFAULT_RETRIEVERS = ["bm25", "dense:all-MiniLM-L6-v2"]


@user_errors
def filter_command(
    queries: Annotated[Path, typer.Argument(help="generated queries (twotower generate's JSONL)")],
    data: Annotated[
        str, typer.Option("--data", "-d", help="the collection (corpus) they were generated from")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="kept queries JSONL; OUTPUT.dropped.jsonl and OUTPUT.report.json beside it",
        ),
    ],
    retriever: Annotated[
        list[str] | None,
        typer.Option(
            help="first stage, repeatable: bm25, dense:MODEL, fusion:MODEL"
            f" [default: {', '.join(DEFAULT_RETRIEVERS)}]"
        ),
    ] = None,
    top_k: Annotated[
        int, typer.Option(min=1, help="keep a query whose source passage ranks within the top K")
    ] = 20,
    first_stage: Annotated[
        Literal["any", "fused"],
        typer.Option(
            help="any: the top K of any one retriever (Tamber et al.'s code); fused: the top K of"
            " the retrievers fused by RRF (k 60)"
        ),
    ] = "any",
    teacher: Annotated[
        str | None,
        typer.Option(
            help="rerank the top K with cross_encoder:NAME, bi_encoder:NAME or fusion:NAME; keep a query"
            " only if its source comes first"
        ),
    ] = None,
    percentile: Annotated[
        float | None,
        typer.Option(
            help="then drop queries whose teacher score of the source is below this percentile"
            " (needs --teacher)",
        ),
    ] = None,
    percentile_of: Annotated[
        Literal["all", "best"],
        typer.Option(
            help="all: of every candidate's teacher score (the paper's code); best: of the kept"
            " queries' best scores"
        ),
    ] = "all",
    per_type: Annotated[
        bool,
        typer.Option(
            "--per-type/--all-types", help="take the percentile per query type or over all types"
        ),
    ] = True,
    types: Annotated[
        str | None,
        typer.Option(help="comma-separated query types to filter (default: all in the file)"),
    ] = None,
    batch_size: BatchSizeOpt = 64,
    max_length: MaxLengthOpt = None,
    device: DeviceOpt = None,
    data_dir: DataDirOpt = None,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="reuse cached embeddings and teacher scores")
    ] = True,
) -> None:
    """Keep generated queries that retrieve their own passage (round-trip consistency)."""
    check_percentile("--percentile", percentile)
    if percentile is not None and teacher is None:
        raise ConfigError("--percentile cuts on the teacher's scores: give --teacher too")
    specs = retriever or DEFAULT_RETRIEVERS
    for spec in specs:  # refused before anything loads
        parse_retriever_spec(spec)
    corpus = load_corpus(data, data_dir)
    retrievers = [
        build_retriever(
            *parse_retriever_spec(spec),
            use_cache=cache,
            device=device,
            batch_size=batch_size,
            max_length=max_length,
        )
        for spec in specs
    ]
    summary, report = filter_file(
        queries,
        corpus,
        retrievers,
        output,
        top_k=top_k,
        teacher=teacher,
        teacher_options={
            "device": device,
            "batch_size": batch_size,
            "max_length": max_length,
            "use_cache": cache,
        },
        percentile=percentile,
        first_stage_rule=first_stage,
        percentile_of=percentile_of,
        per_type=per_type,
        types=[t.strip() for t in types.split(",") if t.strip()] if types else None,
    )
    write_json(output.with_name(output.stem + ".report.json"), summary)
    rows = summary["keep_rates"]
    table = Table(title=f"round-trip filter: {' + '.join(r.name for r in retrievers)}, top {top_k}")
    table.add_column("type")
    table.add_column("generated", justify="right")
    for step in report.passed:
        table.add_column(f"after {step}", justify="right")
    for row in rows:
        table.add_row(
            row["type"],
            str(row["generated"]),
            *(f"{row[step]} ({row[f'{step}_rate']:.0%})" for step in report.passed),
        )
    console = Console(stderr=True)
    console.print(table)
    console.print(
        f"kept {summary['kept']} of {rows[-1]['generated']} → {output};"
        f" dropped with reasons → {summary['dropped_file']}",
        highlight=False,
        soft_wrap=True,
    )
