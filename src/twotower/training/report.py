"""The run report: base → trained per collection and metric, BM25 beside them, and the
refresh rounds of an ANCE/DANCE run."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from twotower.analysis.plots import panels, save_figure
from twotower.evaluation.evaluate import EvalResult
from twotower.evaluation.significance import paired_test

log = logging.getLogger(__name__)


def _short(data: str) -> str:
    return data.rstrip("/").split("/")[-1]


# A change is flagged significant below this p (paired randomisation test over queries).
SIGNIFICANCE = 0.05


def comparison_rows(results: Sequence[EvalResult], base: str, trained: str) -> list[dict]:
    """One row per (collection, metric): bm25, base, trained, trained − base and, where both
    have per-query values, the paired test of trained against base over the judged queries
    (randomisation and t-test p-values, queries won and lost)."""
    by_key = {(_short(r.data), r.system): r for r in results}
    rows = []
    for data in dict.fromkeys(_short(r.data) for r in results):
        trained_result = by_key.get((data, trained))
        if trained_result is None:
            continue
        base_result, bm25 = by_key.get((data, base)), by_key.get((data, "bm25"))
        for metric, value in trained_result.metrics.items():
            before = base_result.metrics[metric] if base_result else None
            test = None
            if base_result is not None and trained_result.per_query and base_result.per_query:
                test = paired_test(
                    {q: v[metric] for q, v in trained_result.per_query.items() if metric in v},
                    {q: v[metric] for q, v in base_result.per_query.items() if metric in v},
                )
            rows.append(
                {
                    "data": data,
                    "metric": metric,
                    "queries": trained_result.n_queries,
                    "bm25": bm25.metrics[metric] if bm25 else None,
                    "base": before,
                    "trained": value,
                    "delta": value - before if before is not None else None,
                    "p_value": test.randomisation_p_value if test else None,
                    "t_p_value": test.t_p_value if test else None,
                    "wins": test.wins if test else None,
                    "losses": test.losses if test else None,
                }
            )
    return rows


def _significant_loss(row: dict) -> bool:
    p, delta = row.get("p_value"), row.get("delta")
    return p is not None and delta is not None and delta < 0 and p < SIGNIFICANCE


def _test_cells(row: dict) -> tuple[str, str]:
    """(p, wins/losses) cells of a row: en dashes where there is no test."""
    if row.get("p_value") is None:
        return "–", "–"
    return f"{row['p_value']:.4f}", f"{row['wins']}/{row['losses']}"


def markdown_comparison(rows: Sequence[dict]) -> str:
    def fmt(value, signed=False):
        return "–" if value is None else (f"{value:+.4f}" if signed else f"{value:.4f}")

    lines = [
        "| collection | metric | BM25 | base | trained | Δ (trained − base) | p | wins/losses |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        delta = fmt(row["delta"], signed=True)
        if _significant_loss(row):
            delta = f"**{delta} (significant loss)**"
        p, record = _test_cells(row)
        lines.append(
            f"| {row['data']} | {row['metric']} | {fmt(row['bm25'])} | {fmt(row['base'])} | "
            f"{fmt(row['trained'])} | {delta} | {p} | {record} |"
        )
    lines += [
        "",
        f"p: paired randomisation test over the judged queries, trained against base"
        f" ({SIGNIFICANCE} flags a significant loss in bold); wins/losses: queries where trained"
        " scores above / below base.",
    ]
    return "\n".join(lines)


def rich_comparison(rows: Sequence[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    columns: list[tuple[str, Literal["left", "right"]]] = [
        ("collection", "left"),
        ("metric", "left"),
        ("BM25", "right"),
        ("base", "right"),
        ("trained", "right"),
        ("Δ", "right"),
        ("p", "right"),
        ("wins/losses", "right"),
    ]
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for row in rows:
        delta = row["delta"]
        colour = "green" if delta and delta > 0 else "red" if delta and delta < 0 else "white"
        if _significant_loss(row):
            colour = "bold red"
        table.add_row(
            row["data"],
            row["metric"],
            *("–" if row[k] is None else f"{row[k]:.4f}" for k in ("bm25", "base", "trained")),
            "–" if delta is None else f"[{colour}]{delta:+.4f}[/]",
            *_test_cells(row),
        )
    return table


def read_refresh_log(path: Path) -> tuple[list[dict], list[dict]]:
    """The adopted rounds of a run's refresh_log.jsonl, in order, and its failed rounds."""
    adopted: list[dict] = []
    failed: list[dict] = []
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # appended line by line: a kill can cut one short
                log.warning("%s:%d: a line cut short, left out of the report", path, number)
                continue
            (failed if "failed" in entry else adopted).append(entry)
    return adopted, failed


def refresh_section(run_dir: Path) -> str:
    """report.md's account of the refresh rounds: a table and a figure against the training step."""
    adopted, failed = read_refresh_log(run_dir / "refresh_log.jsonl")
    if not adopted and not failed:
        return ""
    lines = [
        "## Refresh rounds",
        "",
        "| round | weights of step | first step trained on it | queries | positives' rank mean / median "
        "| negatives shared with previous | encoding s | round s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in adopted:
        overlap = r.get("overlap_with_previous")
        lines.append(
            f"| {r['generation']} | {r['step']} | {r.get('first_step', '')} | {r['queries']} "
            f"| {r['positive_rank_mean']:.1f} / {r['positive_rank_median']:.0f} "
            f"| {'' if overlap is None else f'{overlap:.1%}'} | {r['encode_s']:.0f} "
            f"| {r['finished'] - r['started']:.0f} |"
        )
    notes = sorted({note for r in adopted for note in r.get("notes", [])})
    lines += [""] + [f"- {note}" for note in notes]
    lines += [
        f"- round {r['generation']} (weights of step {r['step']}) failed with exit status"
        f" {r['failed']}; training kept the previous negatives"
        for r in failed
    ]
    if adopted:
        plot_refresh_rounds(adopted, run_dir / "refresh_rounds.png")
        lines += ["", "![refresh rounds](refresh_rounds.png)"]
    return "\n".join(lines) + "\n"


def synthetic_section(train_info: dict) -> str:
    """report.md's account of a recipe's synthetic step: generation and the filter's keep rates."""
    step = train_info.get("synthetic_step") or {}
    if "generation" not in step:
        return f"## Synthetic queries\n\nReused {step['reused']}.\n" if "reused" in step else ""
    generation = step["generation"]
    lines = [
        "## Synthetic queries",
        "",
        f"{generation['tasks']} completions for {generation['documents']} passages in"
        f" {generation['seconds'] / 60:.1f} min ({generation['tokens_per_second']:.1f} tokens/s);"
        f" {generation['written']} passed the junk filter (dropped: {generation['dropped']}).",
    ]
    rates = (step.get("filter") or {}).get("keep_rates") or []
    if rates:
        steps = [k for k in rates[0] if k not in ("type", "generated") and not k.endswith("_rate")]
        lines += [
            "",
            "| type | after junk filter | " + " | ".join(f"after {s}" for s in steps) + " |",
            "|---|---:|" + "---:|" * len(steps),
        ]
        lines += [
            f"| {r['type']} | {r['generated']} | "
            + " | ".join(f"{r[s]} ({r[f'{s}_rate']:.0%})" for s in steps)
            + " |"
            for r in rates
        ]
    return "\n".join(lines) + "\n\n"


def plot_refresh_rounds(rounds: Sequence[dict], path: str | Path) -> Path:
    """ANCE/DANCE refresh rounds against the training step of their weights: the positives' mean
    and median rank under each snapshot (falling as the model learns), the share of each query's
    new negatives that its previous round also had, and the round's encoding and wall time."""
    steps = [r["step"] for r in rounds]
    fig, (ranks, overlap, timing) = panels(3, row_height=3.6)
    ranks.plot(steps, [r["positive_rank_mean"] for r in rounds], "o-", label="mean")
    ranks.plot(steps, [r["positive_rank_median"] for r in rounds], "s--", label="median")
    ranks.set(title="Positives' rank under the snapshot", xlabel="training step", ylabel="rank")
    ranks.legend()
    shared = [
        (r["step"], r["overlap_with_previous"])
        for r in rounds
        if r.get("overlap_with_previous") is not None
    ]
    overlap.plot([s for s, _ in shared], [v for _, v in shared], "o-")
    overlap.set(
        title="Negatives shared with the previous round", xlabel="training step", ylim=(0, 1)
    )
    timing.plot(steps, [r["encode_s"] for r in rounds], "o-", label="encoding")
    timing.plot(steps, [r["finished"] - r["started"] for r in rounds], "s--", label="whole round")
    timing.set(title="Round time", xlabel="training step", ylabel="seconds")
    timing.legend()
    fig.tight_layout()
    return save_figure(fig, Path(path))
