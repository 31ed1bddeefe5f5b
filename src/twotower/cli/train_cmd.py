"""``twotower train`` and ``twotower run``: a YAML recipe, trained (and evaluated)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twotower.cli.common import DeviceOpt, user_errors
from twotower.settings import is_main_process
from twotower.training.pipeline import default_run_dir, train_recipe
from twotower.training.recipe import load_recipe
from twotower.training.report import rich_comparison
from twotower.training.run import run_recipe

RecipeArg = Annotated[Path, typer.Argument(help="YAML recipe (see recipes/)")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override a field: key.sub=value (repeatable)")
]
OutOpt = Annotated[
    Path | None, typer.Option("--output-dir", help="run folder (default: runs/<recipe name>)")
]
ResumeOpt = Annotated[
    bool | None,
    typer.Option(
        "--resume/--restart",
        help="continue from the last checkpoint / start afresh (default: resume if one exists)",
    ),
]


@user_errors
def train_command(
    recipe: RecipeArg,
    set_: SetOpt = None,
    output_dir: OutOpt = None,
    resume: ResumeOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Train the recipe's model; it is saved in sentence-transformers' format to RUN/model."""

    loaded = load_recipe(recipe, set_ or [])
    run_dir = output_dir or default_run_dir(loaded)
    outcome, _ = train_recipe(loaded, run_dir, resume=resume, device=device)
    if not is_main_process():  # under torchrun, rank 0 reports
        return
    Console().print(
        f"trained {outcome.steps} steps in {outcome.seconds:.0f} s → {outcome.model_dir}"
    )


@user_errors
def run_command(
    recipe: RecipeArg,
    set_: SetOpt = None,
    output_dir: OutOpt = None,
    resume: ResumeOpt = None,
    device: DeviceOpt = None,
    probe: Annotated[
        bool | None,
        typer.Option(
            "--probe/--no-probe",
            help="probe base vs trained embeddings (default: recipe's eval.probe)",
        ),
    ] = None,
    retrain: Annotated[
        bool, typer.Option(help="train again even if the run folder holds this recipe's model")
    ] = False,
) -> None:
    """Train, evaluate base vs trained vs BM25 on the recipe's collections, and write report.md."""

    loaded = load_recipe(recipe, set_ or [])
    run_dir = output_dir or default_run_dir(loaded)
    payload = run_recipe(
        loaded, run_dir, resume=resume, device=device, probe=probe, retrain=retrain
    )
    if not is_main_process():  # under torchrun, rank 0 evaluates and reports
        return
    console = Console()
    console.print(rich_comparison(payload["comparison"], f"{loaded.name}: base → trained"))
    console.print(
        f"run folder: {run_dir} (report.md, results.json); {payload['timings']['total_s'] / 60:.1f} min"
    )
