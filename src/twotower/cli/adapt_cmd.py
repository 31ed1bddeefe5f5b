"""``twotower adapt``: a retriever adapted to a corpus with no labelled query."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twotower.cli.common import DeviceOpt, user_errors
from twotower.cli.train_cmd import ResumeOpt, SetOpt
from twotower.settings import is_main_process
from twotower.training.adapt import ADAPT_RECIPE, AdaptOptions, adapt_recipe
from twotower.training.report import rich_comparison
from twotower.training.run import run_recipe


@user_errors
def adapt_command(
    data: Annotated[
        str,
        typer.Option(
            "--data", "-d", help="collection name or BEIR folder whose corpus the model adapts to"
        ),
    ],
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="run folder (default: runs/adapt-<data>)")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model to adapt (default: the recipe's)")
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="fusion:MODEL (BM25 + MODEL), cross_encoder:MODEL or bi_encoder:MODEL"
            " (default: the recipe's)"
        ),
    ] = None,
    generator: Annotated[
        str | None,
        typer.Option(
            "--generator",
            "-g",
            help="ict, crop, ict+crop (one of each per passage and --per-doc), smollm2,"
            " gemma3-270m, a folder or .gguf, or an OpenAI-compatible URL",
        ),
    ] = None,
    per_doc: Annotated[int | None, typer.Option(min=1, help="queries per passage")] = None,
    sample: Annotated[
        int | None,
        typer.Option(min=1, help="adapt to a seeded uniform sample of this many passages"),
    ] = None,
    evaluate: Annotated[
        list[str] | None,
        typer.Option("--eval", help="another collection to evaluate zero-shot (repeatable)"),
    ] = None,
    recipe: Annotated[
        Path, typer.Option(help="the adaptation recipe (default: the packaged adapt.yaml)")
    ] = ADAPT_RECIPE,
    set_: SetOpt = None,
    resume: ResumeOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Adapt a retriever to a corpus without labels: generated queries, teacher-scored candidate
    lists, listwise distillation against the frozen document index, WiSE-FT; then the adapted
    model against the base model and BM25 where the collection has judged test queries."""

    run_dir = output_dir or Path("runs") / f"adapt-{Path(data).name}"
    options = AdaptOptions(
        data=data,
        output_dir=run_dir,
        model=model,
        teacher=teacher,
        generator=generator,
        per_doc=per_doc,
        sample=sample,
        evaluate=tuple(evaluate or ()),
    )
    loaded = adapt_recipe(options, set_ or [], recipe=recipe)
    payload = run_recipe(loaded, run_dir, resume=resume, device=device)
    if not is_main_process():
        return
    console = Console()
    if payload["comparison"]:
        console.print(rich_comparison(payload["comparison"], f"{loaded.name}: base → adapted"))
    console.print(
        f"run folder: {run_dir} (model/, report.md, results.json);"
        f" {payload['timings']['total_s'] / 60:.1f} min"
    )
