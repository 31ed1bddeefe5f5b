"""``twotower compare``: saved results and runs against a baseline, with paired tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twotower.cli.common import DataDirOpt, SeedOpt, user_errors, write_json
from twotower.data.files import atomic_write
from twotower.evaluation.compare import compare
from twotower.evaluation.compare_report import footnote, markdown_comparison, rich_tables
from twotower.evaluation.significance import PERMUTATIONS

OUTPUT_SUFFIXES = (".md", ".json")


@user_errors
def compare_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="results files (results.json of twotower run, twotower eval -o) or TREC run"
            " files; LABEL=FILE names a file's system, NAME@SEED=FILE pools seeds into NAME",
            show_default=False,
        ),
    ],
    baseline: Annotated[
        str | None,
        typer.Option(help="system the others are compared with (default: base, else the first)"),
    ] = None,
    metric: Annotated[
        str, typer.Option(help="metric with per-query scores in the files (ndcg@10, ...)")
    ] = "ndcg@10",
    collections: Annotated[
        list[str] | None,
        typer.Option(
            "--collections",
            "-c",
            help="collections to compare (comma-separated or repeated); a run file's qrels come"
            " from the one named",
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="qrels split that run files are scored on")] = "test",
    data_dir: DataDirOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="also write the tables: x.md or x.json")
    ] = None,
    permutations: Annotated[
        int, typer.Option(min=1, help="sign flips of the randomisation test")
    ] = PERMUTATIONS,
    seed: SeedOpt = 0,
) -> None:
    """Compare systems over the same queries: means, differences, wins/losses, paired t and
    randomisation tests, Holm-corrected over the systems; re-encodes nothing."""
    if output is not None and output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise typer.BadParameter("use a .md or .json file", param_hint="--output")
    names = [c.strip() for given in collections or [] for c in given.split(",") if c.strip()]
    comparison = compare(
        sources,
        baseline=baseline,
        metric=metric,
        collections=names or None,
        split=split,
        data_dir=data_dir,
        seed=seed,
        permutations=permutations,
    )
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)  # logs and pipes: no truncated columns
    for table in rich_tables(comparison):
        console.print(table)
    console.print(footnote(comparison), style="dim", highlight=False)
    if output is None:
        return
    if output.suffix.lower() == ".json":
        write_json(output, comparison.to_json())
    else:
        with atomic_write(output) as handle:
            handle.write(markdown_comparison(comparison))
    Console(stderr=True).print(f"wrote {output}")
