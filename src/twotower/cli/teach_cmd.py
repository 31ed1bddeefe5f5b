"""``twotower teach``: teacher scores for each training query's positives and negatives."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twotower.cli.common import (
    AlphaOpt,
    BatchSizeOpt,
    DataDirOpt,
    DeviceOpt,
    MaxLengthOpt,
    user_errors,
)
from twotower.data import load_collection
from twotower.errors import check_percentile
from twotower.negatives import read_negatives
from twotower.teachers import (
    build_teacher,
    keep_queries,
    normalize_scores,
    parse_teacher_spec,
    score_collection_pairs,
    write_scores,
)


@user_errors
def teach_command(
    data: Annotated[str, typer.Option("--data", "-d", help="collection name or folder")],
    teacher: Annotated[
        str,
        typer.Option(help="cross_encoder:NAME|PATH, bi_encoder:NAME or fusion:NAME (BM25 + NAME)"),
    ],
    pairs: Annotated[
        Path,
        typer.Option(
            help="negatives JSONL (twotower mine): each query is scored with its positives and negatives"
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="write the scores JSONL here")],
    split: Annotated[str, typer.Option(help="qrels split")] = "train",
    normalize: Annotated[
        bool,
        typer.Option(
            "--normalize/--raw",
            help="min-max between the collection's 1st and 99th percentile, clipped to [0, 1]",
        ),
    ] = False,
    drop_below: Annotated[
        float | None,
        typer.Option(
            help="drop queries whose best score is below this percentile of all scores (listwise: 25)",
        ),
    ] = None,
    alpha: AlphaOpt = 0.5,
    batch_size: BatchSizeOpt = 32,
    max_length: MaxLengthOpt = None,
    device: DeviceOpt = None,
    data_dir: DataDirOpt = None,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="reuse cached teacher scores")
    ] = True,
    trust_remote_code: Annotated[
        bool, typer.Option(help="allow a cross-encoder's own code to run")
    ] = False,
) -> None:
    """Score (query, document) pairs with a teacher, for distillation."""
    check_percentile("--drop-below", drop_below)
    started = time.perf_counter()
    collection = load_collection(data, split, data_dir)
    table = read_negatives(pairs, collection)
    to_score: dict[str, list[str]] = {}
    if table.kind == "documents":
        for qid in table:
            to_score[qid] = list(dict.fromkeys(table.positives.get(qid, []) + table[qid]))
    else:  # negative queries: score (query, document) for the document's positive and negative queries
        for doc_id in table:
            for qid in table.positives.get(doc_id, []) + table[doc_id]:
                to_score.setdefault(qid, [])
                if doc_id not in to_score[qid]:
                    to_score[qid].append(doc_id)
    scorer = build_teacher(
        *parse_teacher_spec(teacher),
        collection=collection,
        device=device,
        batch_size=batch_size,
        max_length=max_length,
        alpha=alpha,
        trust_remote_code=trust_remote_code,
        use_cache=cache,
    )
    raw = score_collection_pairs(scorer, collection, to_score)
    stats = scorer.last_stats
    scores, bounds = normalize_scores(raw) if normalize and stats.pairs else (raw, None)
    dropped = 0
    if drop_below is not None:
        kept = set(keep_queries(scores, drop_below))
        dropped = sum(1 for q in scores if q not in kept)
        scores = {q: s for q, s in scores.items() if q in kept}
    rows = write_scores(output, scores, raw if normalize else None)
    notes = [f"{stats.cached} cached, {stats.computed} computed"]
    if bounds is not None:
        notes.append(f"normalised between {bounds[0]:.4g} and {bounds[1]:.4g}")
    if drop_below is not None:
        notes.append(f"{dropped} queries below the {drop_below:g}th percentile dropped")
    Console(stderr=True).print(
        f"scored {rows} pairs for {len(scores)} queries with {scorer.kind}:{scorer.name} ({'; '.join(notes)}) "
        f"in {time.perf_counter() - started:.1f} s → {output}",
        highlight=False,
        soft_wrap=True,
    )
