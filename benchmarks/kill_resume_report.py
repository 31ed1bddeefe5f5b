"""The kill-and-resume benchmark's report (benchmarks/kill_resume.py): the trials' table, the
summary line and BENCHMARKS.md's ``kill-resume`` section."""

from __future__ import annotations

from collections import Counter

from kill_resume_harness import Trial
from sections import markers

SECTION = "kill-resume"


def table(trials: list[Trial], first: int = 1) -> list[str]:
    lines = [
        "| # | command | variant | aimed at | phase hit | killed at | resumed from | outcome "
        "| max abs weight diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(trials, start=first):
        step = f", step {t.step_at_kill}" if t.step_at_kill else ""
        diff = "" if t.max_abs_diff is None else f"{t.max_abs_diff:.3g}"
        lines.append(
            f"| {i} | {t.command} | {t.variant} | {t.target} | {t.phase} | {t.killed_at_s:.1f} s"
            f"{step} | {t.resumed_from} | {t.outcome} | {diff} |"
        )
    return lines


def summary(trials: list[Trial], async_floor: float | None, moved: dict[str, float]) -> str:
    by_command = Counter(t.command for t in trials)
    ok = Counter(t.command for t in trials if t.ok)
    parts = [f"{ok[c]}/{n} {c}" for c, n in by_command.items()]
    exact = sum(t.outcome == "bit-identical" for t in trials if t.command == "train")
    train = sum(t.command == "train" and t.variant != "async-refresh" for t in trials)
    text = f"{sum(ok.values())}/{len(trials)} trials resumed to the uninterrupted result ("
    text += ", ".join(parts) + f"); {exact}/{train} mined and sync-refresh runs bit-identical"
    if async_floor is not None:
        text += f"; two uninterrupted async-refresh runs differ by up to {async_floor:.3g}"
    if moved:
        text += "; training moves a weight by up to " + ", ".join(
            f"{value:.3g} ({variant})" for variant, value in moved.items()
        )
    return text


def section(payload: dict) -> str:
    start, end = markers(SECTION)
    trials = [Trial(**t) for t in payload["trials"]]
    steps = payload["settings"]["train_steps"]
    saves = payload["settings"]["save_steps"]
    schedule = ", ".join(f"{variant} {count}" for variant, count in steps.items())
    lines = [
        start,
        "## Kill and resume",
        "",
        "`python benchmarks/kill_resume.py`: SIGKILL at a moment spread over each run, then the",
        "same command (`--resume` for training), compared with an uninterrupted run of the same",
        f"seed on this CPU. A tiny random BERT; training steps: {schedule}; a checkpoint every",
        f"{saves['mined']} steps ({saves['async-refresh']} for async), refresh rounds every 6 steps.",
        "",
        *table(trials),
        "",
        f"**{payload['summary']}.**",
        "",
        "Training is compared bit for bit: the trainer restores its RNG, optimizer, scheduler and",
        "data order, rows draw their negatives from (seed, row, generation), and a checkpoint",
        "keeps the refresh rounds it had adopted, so a resumed sync run publishes the same rounds",
        "at the same steps. An async round is adopted when it happens to finish, so async runs",
        "are compared with nothing (their spread between two uninterrupted runs is in the line",
        "above); they must finish their schedule. Generate: every task in the output or its",
        "dropped file exactly once, the lines those of an uninterrupted run. Eval: the same",
        "metrics after resuming an interrupted corpus encoding from its saved chunks.",
        end,
    ]
    return "\n".join(lines) + "\n"
