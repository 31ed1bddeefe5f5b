"""The results table of the training recipes: one command runs them all and writes the table.

    python benchmarks/recipes_table.py                      # every recipes/*.yaml
    python benchmarks/recipes_table.py --only mnrl,samtone  # run a subset; the table keeps every recipe
    python benchmarks/recipes_table.py --table-only         # no runs: tabulate runs/*/results.json

Each recipe runs as ``twotower run recipes/NAME.yaml --output-dir runs/NAME``, one after the other.
A run folder whose results.json was written by the same recipe is reused as it is; otherwise
``twotower run`` is called, which itself skips training when the folder already holds the model
this recipe trained (only the evaluation runs again, and the trained model's corpus embeddings
are cached). The table (SciFact test NDCG@10, MRR@10, MAP@100, Recall@10; Cranfield and CISI
NDCG@10; training minutes) replaces the text between ``<!-- recipes:start -->`` and
``<!-- recipes:end -->`` in BENCHMARKS.md (created if absent; the rest of the file is kept), and
the numbers go to benchmarks/recipes_results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sections import markers, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "recipes"
START, END = markers(SECTION)
IN_DOMAIN = ("ndcg@10", "mrr@10", "map@100", "recall@10")
METRIC_NAMES = {
    "ndcg@10": "NDCG@10",
    "mrr@10": "MRR@10",
    "map@100": "MAP@100",
    "recall@10": "Recall@10",
}
COLLECTION_NAMES = {"scifact": "SciFact", "cranfield": "Cranfield", "cisi": "CISI"}
# Table order (that of docs/methods.md); other recipes follow alphabetically.
ORDER = (
    "quickstart",
    "mnrl",
    "mnrl-dual",
    "samtone",
    "samtone-asym",
    "margin-mse",
    "margin-mse-dual",
    "margin-mse+mnrl-dual",
    "listwise",
)


def recipe_paths(recipes_dir: Path, only: list[str] | None = None) -> list[Path]:
    rank = {name: i for i, name in enumerate(ORDER)}
    paths = sorted(recipes_dir.glob("*.yaml"), key=lambda p: (rank.get(p.stem, len(ORDER)), p.stem))
    if only:
        by_name = {p.stem: p for p in paths}
        unknown = [name for name in only if name not in by_name]
        if unknown:
            raise SystemExit(
                f"--only: no recipe {', '.join(unknown)} in {recipes_dir} (have: {', '.join(by_name)})"
            )
        paths = [by_name[name] for name in only]
    return paths


def up_to_date(recipe_path: Path, run_dir: Path) -> bool:
    """Whether ``run_dir/results.json`` was written by this recipe, unchanged."""
    from twotower.training.recipe import load_recipe

    results = run_dir / "results.json"
    if not results.is_file():
        return False
    try:
        saved = json.loads(results.read_text()).get("recipe")
    except ValueError:
        return False
    return saved == load_recipe(recipe_path).model_dump(mode="json")


def run_one(recipe_path: Path, run_dir: Path, *, probe: bool | None, device: str | None) -> int:
    command = [
        sys.executable,
        "-m",
        "twotower.cli.main",
        "run",
        str(recipe_path),
        "--output-dir",
        str(run_dir),
    ]
    if probe is not None:
        command.append("--probe" if probe else "--no-probe")
    if device:
        command += ["--device", device]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, check=False).returncode


def _collection(data: str) -> str:
    return Path(data).name


def summarise(name: str, payload: dict[str, Any], collections: list[str]) -> dict[str, Any]:
    """One table row from a run's results.json: the trained model's metrics and training time."""
    metrics = {
        (r["system"], _collection(r["data"])): r["metrics"] for r in payload.get("results", [])
    }
    train = payload.get("train", {})
    first, *others = collections
    row: dict[str, Any] = {
        "recipe": name,
        "description": (payload.get("recipe") or {}).get("description", "").strip(),
        first: {m: metrics.get(("trained", first), {}).get(m) for m in IN_DOMAIN},
        **{c: {"ndcg@10": metrics.get(("trained", c), {}).get("ndcg@10")} for c in others},
        "train_minutes": train["seconds"] / 60
        if isinstance(train.get("seconds"), (int, float))
        else None,
        "steps": train.get("steps"),
        "examples": train.get("examples"),
    }
    return row


def baselines(payloads: list[dict[str, Any]], collections: list[str]) -> list[dict[str, Any]]:
    """BM25 and the base model, from the first run that evaluated each (the same in every run)."""
    rows = []
    for system, label in (("bm25", "BM25"), ("base", None)):
        for payload in payloads:
            metrics = {
                _collection(r["data"]): r["metrics"]
                for r in payload.get("results", [])
                if r["system"] == system
            }
            if not metrics:
                continue
            model = (payload.get("recipe") or {}).get("model", {}).get("name", "base model")
            first, *others = collections
            rows.append(
                {
                    "recipe": label or f"{model} (not fine-tuned)",
                    first: {m: metrics.get(first, {}).get(m) for m in IN_DOMAIN},
                    **{c: {"ndcg@10": metrics.get(c, {}).get("ndcg@10")} for c in others},
                    "train_minutes": None,
                }
            )
            break
    return rows


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(
    rows: list[dict[str, Any]], reference: list[dict[str, Any]], collections: list[str]
) -> str:
    first, *others = collections
    first_name = COLLECTION_NAMES.get(first, first)
    header = [
        f"{first_name} {METRIC_NAMES[m]}" if i == 0 else METRIC_NAMES[m]
        for i, m in enumerate(IN_DOMAIN)
    ]
    header = [
        "Recipe",
        *header,
        *(f"{COLLECTION_NAMES.get(c, c)} NDCG@10" for c in others),
        "Train min",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for row in [*reference, *rows]:
        name = row["recipe"]
        if "status" in row:
            lines.append(
                f"| [{name}](recipes/{name}.yaml) | "
                + " | ".join([row["status"]] + ["–"] * (len(header) - 2))
                + " |"
            )
            continue
        label = f"[{name}](recipes/{name}.yaml)" if "description" in row else name
        cells = [_fmt(row.get(first, {}).get(m)) for m in IN_DOMAIN]
        cells += [_fmt(row.get(c, {}).get("ndcg@10")) for c in others]
        cells.append(_fmt(row.get("train_minutes"), 1))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section(
    rows: list[dict[str, Any]], reference: list[dict[str, Any]], collections: list[str]
) -> str:
    first, *others = collections
    zero_shot = ", ".join(COLLECTION_NAMES.get(c, c) for c in others)
    return "\n".join(
        [
            START,
            "## Training recipes",
            "",
            f"Each recipe in `recipes/` trained on {COLLECTION_NAMES.get(first, first)} train and evaluated on its test split"
            f"{f' and zero-shot on {zero_shot}' if zero_shot else ''} (trec_eval metrics, judged queries), by"
            " `python benchmarks/recipes_table.py` (`make bench-recipes`); each run's folder is `runs/<recipe>`"
            " (report.md, results.json, probe). Train min: the trainer's wall-clock minutes on this machine"
            " (mining, teacher scoring and evaluation not included). Numbers: benchmarks/recipes_results.json.",
            "",
            markdown_table(rows, reference, collections),
            "",
            END,
        ]
    )


def collect(
    paths: list[Path], runs_dir: Path, collections: list[str], failed: set[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, payloads = [], []
    for path in paths:
        results = runs_dir / path.stem / "results.json"
        if path.stem in failed or not results.is_file():
            rows.append(
                {"recipe": path.stem, "status": "failed" if path.stem in failed else "not run"}
            )
            continue
        payload = json.loads(results.read_text())
        payloads.append(payload)
        rows.append(summarise(path.stem, payload, collections))
    return rows, baselines(payloads, collections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", help="comma-separated recipe names (default: every recipes/*.yaml)"
    )
    parser.add_argument("--recipes-dir", type=Path, default=ROOT / "recipes")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "recipes_results.json")
    parser.add_argument(
        "--collections",
        default="scifact,cranfield,cisi",
        help="in-domain collection first, then the zero-shot ones",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="run nothing; tabulate the existing run folders"
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="call twotower run even when results.json is up to date (training is still reused)",
    )
    parser.add_argument(
        "--probe",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pass --probe/--no-probe to twotower run (default: each recipe's eval.probe)",
    )
    parser.add_argument("--device", help="cpu, cuda, … (default: best available)")
    args = parser.parse_args(argv)

    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    paths = recipe_paths(args.recipes_dir, only)
    collections = [c.strip() for c in args.collections.split(",") if c.strip()]
    failed: set[str] = set()
    if not args.table_only:
        for path in paths:
            run_dir = args.runs_dir / path.stem
            if not args.rerun and up_to_date(path, run_dir):
                print(f"{path.stem}: {run_dir}/results.json is up to date; reused", flush=True)
                continue
            started = time.perf_counter()
            code = run_one(path, run_dir, probe=args.probe, device=args.device)
            print(
                f"{path.stem}: exit {code} after {(time.perf_counter() - started) / 60:.1f} min",
                flush=True,
            )
            if code != 0:
                failed.add(path.stem)
    # The table always covers every recipe: --only limits what runs, not what is tabulated.
    rows, reference = collect(recipe_paths(args.recipes_dir), args.runs_dir, collections, failed)
    write_section(args.benchmarks, section(rows, reference, collections), SECTION)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"collections": collections, "baselines": reference, "recipes": rows}, indent=2)
        + "\n"
    )
    print(markdown_table(rows, reference, collections))
    print(f"wrote {args.benchmarks} (recipes section) and {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
