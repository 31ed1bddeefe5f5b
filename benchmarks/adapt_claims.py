"""Tamber et al. (2025)'s three claims at this machine's scale, through `twotower adapt`'s path.

Every system adapts all-MiniLM-L6-v2's query tower to SciFact against its frozen document index,
with the same teacher (BM25 + all-mpnet-base-v2 fusion), candidates (the passage and the
fusion's ranks 1-199) and schedule (one epoch, batch 32, lr 5e-5, WiSE-FT 0.8) as
recipes/adapt.yaml; only what a claim is about changes:

1. listwise distillation against InfoNCE on the same queries and candidates
   (``listwise`` = `twotower adapt`'s default, ``infonce`` = MNRL over the same lists, τ 0.05);
2. a mix of query types against each single type, equal counts (``listwise`` = 2 inverse-cloze
   sentences per passage, ``crop`` = 2 random crops, ``mix`` = one of each);
3. synthetic queries against real ones, equal counts (``real`` = SciFact train's 809 queries
   with their judged passage in the list; ``ict-809`` = 2 ICT sentences for each of 405 sampled
   passages): only the query texts differ, the teacher labels both.

Each system is evaluated once on SciFact test and zero-shot on Cranfield and CISI; the systems
of each claim are compared with `twotower compare` (paired t and randomisation tests over
queries). A system whose run folder holds results.json is not re-run.

    python benchmarks/adapt_claims.py              # all systems, then the tables
    python benchmarks/adapt_claims.py --only mix   # one system
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "claims-adapt"
EVAL = ["--eval", "cranfield", "--eval", "cisi"]
INFONCE = "loss=[{loss: contrastive, preset: mnrl, temperature: 0.05}]"
CLAIMS = {  # claim → (system, baseline) pairs
    "listwise vs InfoNCE (same queries, candidates)": [("listwise", "infonce")],
    "a mix of query types vs one type (equal counts)": [("mix", "listwise"), ("mix", "crop")],
    "synthetic vs real queries (equal counts)": [("ict-809", "real")],
}


def adapt(name: str) -> list[str]:
    return ["twotower", "adapt", "--data", "scifact", *EVAL, "--output-dir", str(RUNS / name)]


def mixed_queries() -> Path:
    """One ICT sentence and one crop per passage: sample 0 of each system's file."""
    out = RUNS / "mix-queries.jsonl"
    lines = []
    for system in ("listwise", "crop"):
        for line in (RUNS / system / "queries" / "queries.jsonl").read_text().splitlines():
            if json.loads(line)["sample"] == 0:
                lines.append(line)
    out.write_text("\n".join(lines) + "\n")
    return out


def commands(name: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    base = adapt(name)
    base[0] = str(bin_dir / "twotower")
    if name == "listwise":
        return base
    if name == "infonce":
        return base + ["--set", INFONCE, "--set", "teacher.kind=none"]
    if name == "crop":
        return base + ["--generator", "crop", "--per-doc", "2"]
    if name == "mix":
        return base + [
            "--set",
            "synthetic.generator=null",
            "--set",
            f"train.synthetic_queries={mixed_queries()}",
        ]
    if name == "ict-809":
        return base + ["--sample", "405", "--per-doc", "2"]
    if name == "real":  # SciFact train's queries, no synthetic step
        return [
            str(bin_dir / "twotower"),
            "run",
            str(ROOT / "recipes" / "adapt.yaml"),
            "--set",
            "train.split=train",
            "--set",
            "train.synthetic_queries=null",
            "--set",
            "synthetic.generator=null",
            "--set",
            "eval.collections=[scifact, cranfield, cisi]",
            "--set",
            f"output_dir={RUNS / name}",
            "--set",
            "name=real",
        ]
    raise SystemExit(f"unknown system {name!r}")


SYSTEMS = ["listwise", "infonce", "crop", "mix", "ict-809", "real"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=SYSTEMS, action="append")
    a = ap.parse_args()
    RUNS.mkdir(parents=True, exist_ok=True)
    for name in a.only or SYSTEMS:
        if (RUNS / name / "results.json").is_file():
            continue
        print("$", " ".join(commands(name)), flush=True)
        subprocess.run(commands(name), check=True, cwd=ROOT)
    for claim, pairs in CLAIMS.items():
        for system, baseline in pairs:
            files = [RUNS / s / "results.json" for s in (system, baseline)]
            if not all(f.is_file() for f in files):
                print(f"{claim}: {system} vs {baseline} not run yet")
                continue
            print(f"\n## {claim}: {system} vs {baseline}\n", flush=True)
            subprocess.run(
                [
                    str(Path(sys.executable).parent / "twotower"),
                    "compare",
                    f"{system}={files[0]}",
                    f"{baseline}={files[1]}",
                    "--baseline",
                    baseline,
                ],
                check=True,
                cwd=ROOT,
            )


if __name__ == "__main__":
    main()
