"""ANCE and DANCE against static negatives: NDCG@10 in-domain and zero-shot, the dual task, and
paired tests over queries (twotower.evaluation.significance: t-test and randomisation test).

    python benchmarks/refresh_quality.py          # tabulate the run folders below
    python benchmarks/refresh_quality.py --train  # first `twotower run` each missing one (hours on a CPU)

Run folders (each `twotower run recipes/R.yaml --output-dir runs/NAME [--set ...]`):

    ance-async  recipes/ance.yaml, refresh.mode async   (ANCE: negatives refreshed while training)
    ance-sync   recipes/ance.yaml, refresh.mode sync    (training waits for each round)
    ance-off    recipes/ance.yaml, refresh.mode off     (the same loss on static BM25 negatives)
    dance       recipes/dance.yaml                      (DANCE: negative queries refreshed too)
    dance-off   recipes/dance.yaml, refresh.mode off
    mnrl        recipes/mnrl.yaml                       (in-batch InfoNCE on mined negatives)
    mnrl-dual   recipes/mnrl-dual.yaml

Every run is evaluated on the retrieval task and the dual task (eval.tasks: [retrieval, dual]).
Writes the `refresh-quality` section of BENCHMARKS.md and benchmarks/refresh_quality.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from sections import markers, write_section

from twotower.evaluation.significance import paired_test
from twotower.training.report import read_refresh_log

ROOT = Path(__file__).resolve().parents[1]
SECTION = "refresh-quality"
DUAL_TASKS = "--set", "eval.tasks=[retrieval, dual]"
RUNS = {
    "ance-async": ("recipes/ance.yaml", ("--set", 'refresh.mode="async"', *DUAL_TASKS)),
    "ance-sync": ("recipes/ance.yaml", ("--set", 'refresh.mode="sync"', *DUAL_TASKS)),
    "ance-off": ("recipes/ance.yaml", ("--set", 'refresh.mode="off"', *DUAL_TASKS)),
    "dance": ("recipes/dance.yaml", ()),
    "dance-off": ("recipes/dance.yaml", ("--set", 'refresh.mode="off"')),
    "mnrl": ("recipes/mnrl.yaml", DUAL_TASKS),
    "mnrl-dual": ("recipes/mnrl-dual.yaml", ()),
}
LABELS = {
    "base": "all-MiniLM-L6-v2 (not fine-tuned)",
    "ance-async": "ance, refresh async",
    "ance-sync": "ance, refresh sync",
    "ance-off": "ance loss, static BM25 negatives",
    "dance": "dance, refresh async",
    "dance-off": "dance loss, static BM25 negatives",
    "mnrl": "mnrl (static mined negatives)",
    "mnrl-dual": "mnrl-dual (static)",
}
COLLECTIONS = ("scifact", "cranfield", "cisi")
# (a, b): is a different from b? ANCE's claim first (refreshed beats static, same loss).
RETRIEVAL_TESTS = (
    ("ance-async", "ance-off"),
    ("ance-sync", "ance-off"),
    ("dance", "dance-off"),
    ("ance-async", "mnrl"),
    ("dance", "mnrl-dual"),
    ("ance-async", "base"),
    ("dance", "base"),
)
DUAL_TESTS = (("dance", "dance-off"), ("dance", "mnrl-dual"), ("dance", "mnrl"), ("dance", "base"))
METRIC = "ndcg@10"


def _collection(result: dict) -> str:
    return Path(result["data"]).name


def per_query(run_dir: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    """(system, collection, task) → query id → NDCG@10, from a run's results.json."""
    payload = json.loads((run_dir / "results.json").read_text())
    out = {}
    for result in payload["results"]:
        system = result["system"]
        task = "dual" if system.endswith("(dual)") else "retrieval"
        name = system.removesuffix(" (dual)")
        out[(name, _collection(result), task)] = result[f"per_query_{METRIC}"]
    return out


def rounds(run_dir: Path) -> str:
    adopted, failed = read_refresh_log(run_dir / "refresh_log.jsonl")
    if not adopted:
        return "–"
    ranks = " → ".join(f"{r['positive_rank_mean']:.1f}" for r in adopted)
    steps = ", ".join(f"{r['step']}→{r['adopted_at_step']}" for r in adopted)
    return f"{len(adopted)} ({steps}); rank {ranks}" + (f"; {len(failed)} failed" if failed else "")


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)


def collect(runs_dir: Path) -> dict:
    systems: dict[str, dict] = {}
    for name in RUNS:
        folder = runs_dir / name
        if not (folder / "results.json").is_file():
            continue
        scores = per_query(folder)
        train = json.loads((folder / "results.json").read_text())["train"]
        systems[name] = {
            "scores": {f"{c}/{t}": q for (s, c, t), q in scores.items() if s == "trained"},
            "train_s": train.get("seconds"),
            "steps": train.get("steps"),
            "rounds": rounds(folder),
        }
        # The base model, from whichever runs evaluated it on each collection and task.
        base = systems.setdefault("base", {"scores": {}, "rounds": "–"})
        for (system, collection, task), values in scores.items():
            if system == "base":
                base["scores"].setdefault(f"{collection}/{task}", values)
    tests = []
    for task, pairs, collections in (
        ("retrieval", RETRIEVAL_TESTS, COLLECTIONS),
        ("dual", DUAL_TESTS, ("scifact",)),
    ):
        for a, b in pairs:
            for collection in collections:
                key = f"{collection}/{task}"
                if key in systems.get(a, {}).get("scores", {}) and key in systems.get(b, {}).get(
                    "scores", {}
                ):
                    result = paired_test(systems[a]["scores"][key], systems[b]["scores"][key])
                    tests.append(
                        {"a": a, "b": b, "collection": collection, "task": task, **result.to_json()}
                    )
    return {"systems": systems, "tests": tests}


def _cell(system: dict, key: str) -> str:
    scores = system["scores"].get(key)
    return f"{mean(scores):.4f}" if scores else "–"


def section(report: dict) -> str:
    start, end = markers(SECTION)
    systems = report["systems"]
    lines = [
        start,
        "## ANCE and DANCE: refreshed against static negatives",
        "",
        "`python benchmarks/refresh_quality.py` (run folders and commands in its docstring; SciFact"
        " train, 28 steps of 32, 1 epoch, all-MiniLM-L6-v2 shared towers). NDCG@10 on the test"
        " splits; the dual task reverses the qrels (each relevant document retrieves its queries"
        " among all of the split's queries, as DANCE reports it).",
        "",
        "| system | SciFact | Cranfield (zero-shot) | CISI (zero-shot) | SciFact dual | training s"
        " | refresh rounds (weights' step→in use from; positives' mean rank) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in ("base", *RUNS):
        if name not in systems:
            continue
        s = systems[name]
        train = f"{s['train_s']:.0f}" if s.get("train_s") else "–"
        lines.append(
            f"| {LABELS[name]} | {_cell(s, 'scifact/retrieval')} | {_cell(s, 'cranfield/retrieval')}"
            f" | {_cell(s, 'cisi/retrieval')} | {_cell(s, 'scifact/dual')} | {train} | {s['rounds']} |"
        )
    lines += [
        "",
        "Paired tests over queries (NDCG@10 per query; two-sided; t: paired t-test, rand.: paired"
        " randomisation test with 10,000 sign flips, scipy):",
        "",
        "| a | b | collection | task | a | b | a − b | wins / losses | p (t) | p (rand.) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in report["tests"]:
        lines.append(
            f"| {t['a']} | {t['b']} | {t['collection']} | {t['task']} | {t['mean_a']:.4f}"
            f" | {t['mean_b']:.4f} | {t['difference']:+.4f} | {t['wins']} / {t['losses']}"
            f" | {t['t_p_value']:.3g} | {t['randomisation_p_value']:.3g} |"
        )
    lines += ["", end]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="folder of run folders")
    parser.add_argument("--train", action="store_true", help="run the missing run folders first")
    parser.add_argument(
        "--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md", help="page to update"
    )
    args = parser.parse_args(argv)
    if args.train:
        for name, (recipe, extra) in RUNS.items():
            if not (args.runs / name / "results.json").is_file():
                command = [str(Path(sys.executable).with_name("twotower")), "run", recipe]
                command += ["--output-dir", str(args.runs / name), *extra]
                subprocess.run(command, check=True, cwd=ROOT)
    report = collect(args.runs)
    means = {
        name: {
            **{k: v for k, v in s.items() if k != "scores"},
            METRIC: {key: mean(q) for key, q in s["scores"].items()},
        }
        for name, s in report["systems"].items()
    }
    (ROOT / "benchmarks" / "refresh_quality.json").write_text(
        json.dumps({"systems": means, "tests": report["tests"]}, indent=1) + "\n"
    )
    text = section(report)
    write_section(args.benchmarks, text, SECTION)
    print(text)


if __name__ == "__main__":
    main()
