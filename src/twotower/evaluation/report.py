"""Result tables: rich on the terminal, markdown in reports."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from twotower.evaluation.evaluate import EvalResult


def results_table(results: Sequence[EvalResult], title: str | None = None) -> Table:
    metrics = list(results[0].metrics) if results else []
    table = Table(title=title)
    table.add_column("data")
    table.add_column("system")
    table.add_column("queries", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for result in results:
        name = result.data.rstrip("/").split("/")[-1]
        table.add_row(
            name,
            result.system,
            str(result.n_queries),
            *(f"{result.metrics[m]:.4f}" for m in metrics),
        )
    return table


def print_results(
    results: Sequence[EvalResult], console: Console | None = None, title: str | None = None
) -> None:
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)  # logs and pipes: no truncated columns
    console.print(results_table(results, title))


def markdown_table(results: Sequence[EvalResult]) -> str:
    metrics = list(results[0].metrics) if results else []
    lines = [
        "| data | system | queries | " + " | ".join(metrics) + " |",
        "|---|---|---:|" + "---:|" * len(metrics),
    ]
    for r in results:
        name = r.data.rstrip("/").split("/")[-1]
        lines.append(
            f"| {name} | {r.system} | {r.n_queries} | "
            + " | ".join(f"{r.metrics[m]:.4f}" for m in metrics)
            + " |"
        )
    return "\n".join(lines)
