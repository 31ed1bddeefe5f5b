"""A comparison as tables: markdown for files and reports, rich for the terminal."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from twotower.evaluation.compare import Comparison, ComparisonTable, SystemRow

DASH = "–"


def _number(value: float | None, spec: str = ".4f") -> str:
    if value is None or math.isnan(value):
        return DASH
    return f"{value:{spec}}"


def _p(value: float | None) -> str:
    # Four decimals say nothing below 1e-4 (the randomisation test's resolution): exponent there.
    if value is None or math.isnan(value):
        return DASH
    return f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}"


def _mean(row: SystemRow) -> str:
    std = row.system.std
    return f"{row.system.mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def _holm_shown(table: ComparisonTable) -> bool:
    """Holm's columns only where several systems share the baseline (one: the same p)."""
    return len(table.rows) > 1


def _seeds_shown(table: ComparisonTable) -> bool:
    return any(row.system.seeds for row in [table.baseline, *table.rows])


def _header(table: ComparisonTable) -> list[str]:
    columns = ["system", *(["seeds"] if _seeds_shown(table) else []), "mean", "Δ"]
    columns += ["wins/losses", "t", "p (t)", "p (rand.)"]
    return columns + (["p (t, Holm)", "p (rand., Holm)"] if _holm_shown(table) else [])


def _cells(row: SystemRow, table: ComparisonTable) -> list[str]:
    seeds = [str(len(row.system.seeds)) if row.system.seeds else "1"] if _seeds_shown(table) else []
    test = row.test
    if test is None:  # the baseline itself
        blank = [DASH] * (len(_header(table)) - 2 - len(seeds))
        return [f"{row.system.name} (baseline)", *seeds, _mean(row), *blank]
    cells = [
        row.system.name,
        *seeds,
        _mean(row),
        f"{test.difference:+.4f}",
        f"{test.wins}/{test.losses}",
        _number(test.t_statistic, ".2f"),
        _p(test.t_p_value),
        _p(test.randomisation_p_value),
    ]
    if _holm_shown(table):
        cells += [_p(row.t_p_holm), _p(row.randomisation_p_holm)]
    return cells


def table_title(comparison: Comparison, table: ComparisonTable) -> str:
    queries = len(table.baseline.system.per_query)
    return f"{table.title}: {comparison.metric} against {comparison.baseline}, {queries} queries"


def footnote(comparison: Comparison) -> str:
    return (
        f"Δ: mean {comparison.metric} of the system minus the baseline's over the queries"
        " (seed-averaged for a pooled system); wins/losses: queries above / below the baseline;"
        " t and p (t): paired t-test; p (rand.): paired randomisation test"
        f" ({comparison.permutations} sign flips, seed {comparison.seed}; exact below 14"
        " queries); both two-sided. Holm: the p-values corrected over the systems compared"
        " with the baseline in that table (Holm 1979). mean ± std: over training seeds"
        " (systems NAME@SEED pooled into NAME)."
    )


def markdown_comparison(comparison: Comparison) -> str:
    lines: list[str] = []
    for table in comparison.tables:
        header = _header(table)
        lines += [
            f"### {table_title(comparison, table)}",
            "",
            "| " + " | ".join(header) + " |",
            "|---|" + "---:|" * (len(header) - 1),
        ]
        for row in [table.baseline, *table.rows]:
            lines.append(
                "| " + " | ".join(c.replace("|", "\\|") for c in _cells(row, table)) + " |"
            )
        lines.append("")
    lines.append(footnote(comparison))
    return "\n".join(lines) + "\n"


def rich_tables(comparison: Comparison) -> list[Table]:
    from rich.markup import escape
    from rich.table import Table

    tables = []
    for table in comparison.tables:
        shown = Table(title=escape(table_title(comparison, table)))
        for index, column in enumerate(_header(table)):
            shown.add_column(column, justify="left" if index == 0 else "right")
        for row in [table.baseline, *table.rows]:
            cells = [escape(cell) for cell in _cells(row, table)]  # a name may hold "[...]"
            if row.test is not None and row.test.difference:
                colour = "green" if row.test.difference > 0 else "red"
                delta = _header(table).index("Δ")
                cells[delta] = f"[{colour}]{cells[delta]}[/]"
            shown.add_row(*cells)
        tables.append(shown)
    return tables
