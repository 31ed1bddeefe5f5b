"""``twotower mine``: hard negative documents (or DANCE's negative queries) for training queries."""

from __future__ import annotations

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
    SeedOpt,
    user_errors,
)
from twotower.cli.index_options import (
    HnswNeighborsOpt,
    IndexOpt,
    IvfListsOpt,
    IvfProbeOpt,
    index_settings,
)
from twotower.data import load_collection
from twotower.errors import ConfigError
from twotower.negatives import (
    NEGATIVE_QUERIES_PER_DOCUMENT,
    NEGATIVE_QUERY_WINDOW,
    NEGATIVE_WINDOW,
    NEGATIVES_PER_QUERY,
    RankWindow,
    build_retriever,
    mine_negative_queries,
    mine_negatives,
    write_negatives,
)


@user_errors
def mine_command(
    data: Annotated[str, typer.Option("--data", "-d", help="collection name or folder")],
    output: Annotated[Path, typer.Option("--output", "-o", help="write the negatives JSONL here")],
    split: Annotated[str, typer.Option(help="qrels split whose queries are mined")] = "train",
    retriever: Annotated[str, typer.Option(help="bm25, dense or fusion (BM25 + --model)")] = "bm25",
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="dense model name or folder")
    ] = None,
    negatives: Annotated[
        Literal["documents", "queries"],
        typer.Option(
            help="documents (hard negatives per query) or queries (per positive document, DANCE)"
        ),
    ] = "documents",
    count: Annotated[
        int | None,
        typer.Option(
            min=0, help="negatives per query (0: the whole window) [default: 8; 20 for queries]"
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="ranks START:END, 1-based, inclusive [default: 10:100; 1:200 for queries]"
        ),
    ] = None,
    seed: SeedOpt = 0,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="false-negative filter: cross_encoder:NAME, bi_encoder:NAME, fusion:NAME or scores_file:SCORES.jsonl"
        ),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(help="drop a negative scoring above (positive score - margin), teacher units"),
    ] = None,
    reference: Annotated[
        Literal["max", "min"],
        typer.Option(
            help="positive score to compare with when a query has several: max or min (stricter)"
        ),
    ] = "max",
    alpha: AlphaOpt = 0.5,
    batch_size: BatchSizeOpt = 64,
    max_length: MaxLengthOpt = None,
    device: DeviceOpt = None,
    data_dir: DataDirOpt = None,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache", help="reuse cached tables, embeddings and teacher scores"
        ),
    ] = True,
    index: IndexOpt = "exact",
    ivf_lists: IvfListsOpt = None,
    ivf_probe: IvfProbeOpt = 16,
    hnsw_neighbors: HnswNeighborsOpt = 32,
) -> None:
    """Mine hard negatives from a rank window, never a positive, deterministic for a seed."""
    if (teacher is None) != (margin is None):
        raise ConfigError("false-negative filtering needs both --teacher and --margin")
    if negatives == "queries" and teacher is not None:
        raise ConfigError("--teacher filtering applies to negative documents only")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    for_queries = negatives == "queries"
    if window:
        rank_window = RankWindow.parse(window)
    else:
        rank_window = NEGATIVE_QUERY_WINDOW if for_queries else NEGATIVE_WINDOW
    if count is None:
        count = NEGATIVE_QUERIES_PER_DOCUMENT if for_queries else NEGATIVES_PER_QUERY
    search = index_settings(index, ivf_lists, ivf_probe, hnsw_neighbors)
    if for_queries and search.type != "exact":
        raise ConfigError("--index applies to negative documents (queries are searched exactly)")
    collection = load_collection(data, split, data_dir)
    ranker = build_retriever(
        retriever,
        model,
        alpha=alpha,
        use_cache=cache,
        device=device,
        batch_size=batch_size,
        max_length=max_length,
        index=search,
    )
    if for_queries:
        table, stats = mine_negative_queries(
            collection, ranker, window=rank_window, count=count, seed=seed, use_cache=cache
        )
    else:
        scorer = None
        if teacher is not None:
            from twotower.teachers import build_teacher, parse_teacher_spec

            scorer = build_teacher(
                *parse_teacher_spec(teacher),
                collection=collection,
                device=device,
                batch_size=batch_size,
                max_length=max_length,
                alpha=alpha,
                use_cache=cache,
            )
        table, stats = mine_negatives(
            collection,
            ranker,
            window=rank_window,
            count=count,
            seed=seed,
            teacher=scorer,
            margin=margin,
            reference=reference,
            use_cache=cache,
        )
    write_negatives(output, table)
    anchors = "documents" if for_queries else "queries"
    items = "negative queries" if for_queries else "negatives"
    details = [f"{stats.short} with fewer than {count}"] if count and stats.short else []
    if stats.false_negatives:
        details.append(f"{stats.false_negatives} false negatives dropped")
    if stats.index_recall is not None:
        details.append(f"{search.describe()} index, recall {stats.index_recall:.3f} against exact")
    if stats.skipped:
        details.append(f"{stats.skipped} queries without a positive in the corpus skipped")
    extra = f" ({'; '.join(details)})" if details else ""
    Console(stderr=True).print(
        f"mined {stats.negatives} {items} for {stats.anchors} {anchors}{extra} with {ranker.name}, window "
        f"{rank_window}, seed {seed} in {stats.seconds:.1f} s{' (cached)' if stats.cached else ''} → {output}",
        highlight=False,
        soft_wrap=True,
    )
