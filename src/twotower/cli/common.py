"""What every command shares: logging, one-line errors (exit status 2, 3 for a training fault),
JSON output."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from typer.core import TyperGroup

try:  # typer >= 0.22 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as click_errors  # type: ignore[no-redef]

from twotower.data.files import atomic_write
from twotower.errors import TrainingFault, TwotowerError
from twotower.settings import is_main_process

console = Console(stderr=True)
EXIT_TRAINING_FAULT = 3  # not 2: the input was fine, the run failed (see twotower.errors)
F = TypeVar("F", bound=Callable[..., Any])

# Options several commands share, each validated where it is parsed.
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="encoding / scoring batch size")]
MaxLengthOpt = Annotated[
    int | None, typer.Option(min=1, help="max tokens per text (model default if unset)")
]
AlphaOpt = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="weight of BM25 in fusion, in [0, 1]")
]
SeedOpt = Annotated[int, typer.Option(min=0, help="sampling seed")]
DeviceOpt = Annotated[
    str | None, typer.Option(help="cpu, cuda, cuda:1 … (default: best available)")
]
DataDirOpt = Annotated[Path | None, typer.Option(help="folder holding collections by name")]


def print_error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


class OneLineErrors(TyperGroup):
    """A bad option value or usage is one line naming the option, with exit status 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            # click's main takes standalone_mode positionally too; callers pass it by keyword.
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except click_errors.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        # Without standalone mode click returns the exit code of an Exit instead of exiting.
        if isinstance(code, int) and code:
            sys.exit(code)
        return code


def setup_logging(verbose: bool = False) -> None:
    # Under torchrun only rank 0 reports progress; the other ranks say only what goes wrong.
    quiet = not is_main_process()
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )
    for noisy in (
        "httpx",
        "urllib3",
        "filelock",
        "huggingface_hub",
        "sentence_transformers",
        "transformers",
        "bm25s",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def user_errors(func: F) -> F:
    """Turn a :class:`TwotowerError` (and a missing file) into one red line and exit status 2,
    a :class:`TrainingFault` into one red line and exit status 3."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TwotowerError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None
        except TrainingFault as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_TRAINING_FAULT) from None
        except FileNotFoundError as exc:
            print_error(f"{exc.filename}: no such file" if exc.filename else str(exc))
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def write_json(path: Path, payload: Any) -> None:
    with atomic_write(path) as handle:
        handle.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
