"""Synthetic queries with no labels: what the round-trip filter kept, and NDCG@10 of the recipes
trained on them against the base model and BM25, with paired tests over queries.

    python benchmarks/synthetic_quality.py           # tabulate the run folders below
    python benchmarks/synthetic_quality.py --train   # first `twotower run` each missing one

Run folders: runs/synthetic-listwise and runs/synthetic-contrastive (recipes of the same names;
both train on runs/synthetic/scifact-smollm2.jsonl, made by the first of them), and any
runs/RECIPE-TYPE made with ``twotower run recipes/RECIPE.yaml --output-dir runs/RECIPE-TYPE
--set 'train.query_types=[TYPE]'`` (one query type against the mix, the paper's second claim).
Writes the `synthetic-quality` section of BENCHMARKS.md and benchmarks/synthetic_quality.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from refresh_quality import per_query
from sections import markers, write_section

from twotower.evaluation.significance import paired_test

ROOT = Path(__file__).resolve().parents[1]
SECTION = "synthetic-quality"
QUERIES = ROOT / "runs" / "synthetic" / "scifact-smollm2.jsonl"
RUNS = ("synthetic-listwise", "synthetic-contrastive")
COLLECTIONS = ("scifact", "cranfield", "cisi")
NAMES = {"scifact": "SciFact", "cranfield": "Cranfield (zero-shot)", "cisi": "CISI (zero-shot)"}


def systems(runs_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """system → collection → query id → NDCG@10 (retrieval task), base and BM25 included."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    folders = [runs_dir / r for r in RUNS] + sorted(
        p
        for r in RUNS
        for p in runs_dir.glob(f"{r}-*")  # one query type (train.query_types)
    )
    for folder in folders:
        if not (folder / "results.json").is_file():
            continue
        for (system, collection, task), scores in per_query(folder).items():
            if task != "retrieval":
                continue
            name = folder.name if system == "trained" else system
            out.setdefault(name, {}).setdefault(collection, scores)
    return out


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)


def comparisons(found: dict) -> list[tuple[str, str]]:
    pairs = [
        ("synthetic-listwise", "synthetic-contrastive"),
        ("synthetic-listwise", "base"),
        ("synthetic-listwise", "bm25"),
        ("synthetic-contrastive", "base"),
    ]
    pairs += [  # the mix of types against one type (the paper's second claim)
        (recipe, name) for recipe in RUNS for name in found if name.startswith(f"{recipe}-")
    ]
    return [(a, b) for a, b in pairs if a in found and b in found]


def section(report: dict) -> str:
    start, end = markers(SECTION)
    found, filtering = report["systems"], report["filter"]
    lines = [
        start,
        "## Synthetic queries, no labels (SciFact)",
        "",
        "`python benchmarks/synthetic_quality.py` after `twotower run recipes/synthetic-listwise.yaml`"
        " and `recipes/synthetic-contrastive.yaml`: SmolLM2-135M-Instruct (bf16, CPU) wrote one query"
        " of each of six types for passages sampled uniformly from the SciFact corpus (seeded, no"
        " qrels read), then the round-trip filter ran. No labelled query trains.",
        "",
    ]
    if filtering:
        generation = filtering.get("generation", {})
        rates = filtering["filter"]["keep_rates"] if filtering.get("filter") else []
        steps = [
            k
            for k in (rates[0] if rates else {})
            if k not in ("type", "generated") and not k.endswith("_rate")
        ]
        dropped = generation.get("dropped_by_type", {})
        lines += [
            f"Generation: {generation.get('documents', '?')} passages, {generation.get('tasks', '?')}"
            f" completions in {generation.get('seconds', 0) / 60:.1f} min"
            f" ({generation.get('completions_per_second', 0):.2f} completions/s,"
            f" {generation.get('tokens_per_second', 0):.1f} tokens/s); junk dropped by reason:"
            f" {json.dumps(generation.get('dropped', {}))}.",
            "",
            "| type | completions | after junk filter | "
            + " | ".join(f"after {s}" for s in steps)
            + " |",
            "|---|---:|---:|" + "---:|" * len(steps),
        ]
        for row in rates:
            kind = row["type"]
            junk = (
                sum(dropped.get(kind, {}).values())
                if kind != "all"
                else sum(generation.get("dropped", {}).values())
            )
            completions = row["generated"] + junk
            cells = " | ".join(f"{row[s]} ({row[s] / completions:.0%})" for s in steps)
            lines.append(f"| {kind} | {completions} | {row['generated']} | {cells} |")
        lines += ["", "Kept and dropped examples (dropped with their step and reason):", ""]
        for kind, ex in filtering["filter"].get("examples", {}).items():
            kept = "; ".join(f"“{q}”" for q in ex["kept"]) or "–"
            gone = "; ".join(f"“{q}”" for q in ex["dropped"]) or "–"
            lines.append(f"- **{kind}** kept: {kept}. Dropped: {gone}")
        lines.append("")
    lines += [
        "| system | " + " | ".join(NAMES[c] for c in COLLECTIONS) + " |",
        "|---|" + "---:|" * len(COLLECTIONS),
    ]
    for name, by_collection in found.items():
        cells = " | ".join(
            f"{mean(by_collection[c]):.4f}" if c in by_collection else "–" for c in COLLECTIONS
        )
        lines.append(f"| {name} | {cells} |")
    lines += [
        "",
        "Paired tests over queries (NDCG@10; two-sided t-test and randomisation test, scipy):",
        "",
        "| a | b | collection | a | b | a − b | wins / losses | p (t) | p (rand.) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in report["tests"]:
        lines.append(
            f"| {t['a']} | {t['b']} | {t['collection']} | {t['mean_a']:.4f} | {t['mean_b']:.4f}"
            f" | {t['difference']:+.4f} | {t['wins']} / {t['losses']} | {t['t_p_value']:.3g}"
            f" | {t['randomisation_p_value']:.3g} |"
        )
    lines += ["", end]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="folder of run folders")
    parser.add_argument("--train", action="store_true", help="run the missing recipes first")
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.train:
        for name in RUNS:
            if not (args.runs / name / "results.json").is_file():
                command = [str(Path(sys.executable).with_name("twotower")), "run"]
                command += [f"recipes/{name}.yaml", "--output-dir", str(args.runs / name)]
                subprocess.run(command, check=True, cwd=ROOT)
    found = systems(args.runs)
    tests = []
    for a, b in comparisons(found):
        for collection in COLLECTIONS:
            if collection in found[a] and collection in found[b]:
                result = paired_test(found[a][collection], found[b][collection])
                tests.append({"a": a, "b": b, "collection": collection, **result.to_json()})
    report_path = QUERIES.with_name(QUERIES.stem + ".report.json")
    filtering = json.loads(report_path.read_text()) if report_path.is_file() else None
    report = {"systems": found, "tests": tests, "filter": filtering}
    means = {n: {c: mean(q) for c, q in by.items()} for n, by in found.items()}
    (ROOT / "benchmarks" / "synthetic_quality.json").write_text(
        json.dumps({"ndcg@10": means, "tests": tests, "filter": filtering}, indent=1) + "\n"
    )
    text = section(report)
    write_section(args.benchmarks, text, SECTION)
    print(text)


if __name__ == "__main__":
    main()
