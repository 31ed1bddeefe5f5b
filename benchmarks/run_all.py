"""Speed benchmark: twotower against what a sentence-transformers user would run, side by side.

    .venv/bin/python benchmarks/run_all.py            # full: SciFact, ~40 min on 2 quiet cores
    .venv/bin/python benchmarks/run_all.py --quick    # 300 documents, 3 training steps (~8 min)
    .venv/bin/python benchmarks/run_all.py --quick --docs 120 --steps 2 --batch-size 8 \
        --max-length 64 --out /tmp/smoke.json --page /tmp/BENCHMARKS.md   # smoke, ~2 min
    .venv/bin/python benchmarks/run_all.py --render benchmarks/results.json  # table only

Each measurement runs in its own process (``benchmarks/speed_cases.py``) so that cold runs are
cold and peak memory is per case; the embedding caches live in a fresh temporary folder
(``TWOTOWER_CACHE`` for ours, ``cache_folder`` for ``mine_hard_negatives``). Figures:

* training: seconds per optimiser step (median of steps 2..N) and pairs per second, same model
  (all-MiniLM-L6-v2), in-batch contrastive loss (ST ``MultipleNegativesRankingLoss`` vs our
  ``contrastive`` preset ``mnrl``), batch 32, max length 256, SciFact train pairs, same seed;
* corpus encoding: documents and tokens per second (tokens: non-padding tokens at max length
  256); ours is the corpus encoding inside the cold evaluation;
* hard-negative mining: 3 negatives per training query from ranks 11..100, cold and warm
  (ST: ``mine_hard_negatives(cache_folder=...)`` filled; ours: corpus embedding cache filled,
  the mined-table cache off; also shown: ours with the mined table cached);
* evaluation of the SciFact test split: cold, and with the corpus embeddings cached (ST: the
  embeddings of ``encode_document`` saved with numpy and passed as ``corpus_embeddings``);
* peak resident memory of each process (model loading included, same for both sides).

sentence-transformers runs in its default (fp32) and in the bf16 configurations its user gets
with one flag or one ``with`` block: training with ``SentenceTransformerTrainingArguments(
bf16=True)``; encoding inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` and with the
weights in bf16 (``model.to(torch.bfloat16)``); mining and evaluation inside autocast. Per
measure the fastest of ST's configurations is "ST best".

Ratios are twotower's speed over sentence-transformers' (> 1: twotower is faster): the fast
path against ST best (the targets apply to this one), the fast path against ST's default, and
twotower fp32 against ST's default fp32. Results go to ``benchmarks/results.json``
(``results-quick.json`` with ``--quick``) and, for full runs or with ``--markdown``, to the
section of BENCHMARKS.md between the ``speed`` markers; ``--render RESULTS.json`` rewrites that
section from a saved run without measuring anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from speed_report import (
    TARGETS,
    markdown,
    quality,
    render,
    summarise,
    table,
    write_markdown,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORDER = [
    # encoding + evaluation (ours: the cold evaluation's corpus encoding is the encoding figure)
    ("st_encode", "eval"),
    ("st_encode_autocast", "eval"),
    ("st_encode_bf16", "eval"),
    ("tt_eval_cold_fp32", "eval"),
    ("tt_eval_cold_auto", "eval"),
    ("st_eval_cold", "eval"),
    ("st_eval_cold_autocast", "eval"),
    ("st_eval_cached", "eval"),
    ("st_eval_cached_autocast", "eval"),
    ("tt_eval_cached_fp32", "eval"),
    ("tt_eval_cached_auto", "eval"),
    # mining, with its own empty caches so that cold is cold
    ("st_mine_cold", "mine"),
    ("st_mine_cold_autocast", "mine"),
    ("tt_mine_cold", "mine"),
    ("st_mine_warm", "mine"),
    ("st_mine_warm_autocast", "mine"),
    ("tt_mine_warm", "mine"),
    ("tt_mine_warm_table", "mine"),
    # training
    ("st_train", "train"),
    ("st_train_bf16", "train"),
    ("tt_train_fp32", "train"),
    ("tt_train_auto", "train"),
]

# A warm or cached case measures nothing unless the case that fills its cache ran before it.
NEEDS = {
    "st_eval_cached": "st_encode",
    "st_eval_cached_autocast": "st_encode_autocast",
    "tt_eval_cached_fp32": "tt_eval_cold_fp32",
    "tt_eval_cached_auto": "tt_eval_cold_auto",
    "st_mine_warm": "st_mine_cold",
    "st_mine_warm_autocast": "st_mine_cold_autocast",
    "tt_mine_warm": "tt_mine_cold",
    "tt_mine_warm_table": "tt_mine_cold",
}


def quick_collection(source: Path, target: Path, n_docs: int, seed: int = 0) -> Path:
    """A BEIR folder with ``n_docs`` documents: the positives of a sample of test and train
    queries (whose qrels are kept), filled up with random other documents."""
    from twotower.data import load_collection

    rng = random.Random(seed)
    rows = [json.loads(line) for line in (source / "corpus.jsonl").open()]
    by_id = {r["_id"]: r for r in rows}
    keep: dict[str, None] = {}
    qrels_out: dict[str, list[str]] = {}
    for split, n_queries in (("test", 40), ("train", 80)):
        collection = load_collection(source, split)
        queries = rng.sample(
            collection.judged_query_ids, min(n_queries, len(collection.judged_query_ids))
        )
        lines = []
        for q in queries:
            for d, grade in collection.qrels[q].items():
                if d in by_id and len(keep) < n_docs:
                    keep[d] = None
                    lines.append(f"{q}\t{d}\t{grade}")
        qrels_out[split] = lines
    others = [r["_id"] for r in rows if r["_id"] not in keep]
    for d in rng.sample(others, max(0, n_docs - len(keep))):
        keep[d] = None
    target.mkdir(parents=True, exist_ok=True)
    (target / "qrels").mkdir(exist_ok=True)
    with (target / "corpus.jsonl").open("w") as handle:
        for d in keep:
            handle.write(json.dumps(by_id[d]) + "\n")
    shutil.copy(source / "queries.jsonl", target / "queries.jsonl")
    for split, lines in qrels_out.items():
        (target / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n"
        )
    return target


def corpus_tokens(data: Path, max_length: int) -> int:
    """Non-padding tokens of the corpus at ``max_length`` (what the encoder actually runs on)."""
    from twotower.data import load_collection
    from twotower.models.encoder import load_sentence_transformer

    model = load_sentence_transformer("all-MiniLM-L6-v2", device="cpu")
    model.max_seq_length = max_length
    texts = load_collection(data, "test").corpus.texts
    return sum(
        int(model.preprocess(texts[i : i + 4096])["attention_mask"].sum())
        for i in range(0, len(texts), 4096)
    )


def machine() -> dict:
    import sentence_transformers
    import torch
    import transformers

    cpu = "unknown"
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        )
        flags = next(line for line in info.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def run_case(name: str, cfg: dict, cache: Path, log) -> dict:
    env = {
        **os.environ,
        "TWOTOWER_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "PYTHONWARNINGS": "ignore",
    }
    load = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, str(HERE / "speed_cases.py"), name, json.dumps(cfg)],
        env=env,
        capture_output=True,
        text=True,
    )
    log.write(f"=== {name}\n{proc.stdout}\n{proc.stderr}\n")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"benchmark case {name} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["load_avg_1m_before"] = load
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 documents, 3 training steps")
    parser.add_argument(
        "--data", default="scifact", help="BEIR collection (name or folder); default scifact"
    )
    parser.add_argument("--docs", type=int, default=300, help="documents in --quick mode")
    parser.add_argument("--steps", type=int, help="training steps (default 10; 3 with --quick)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="training batch (default 32; small for a smoke run)",
    )
    parser.add_argument(
        "--max-length", type=int, default=256, help="max tokens per text (default 256)"
    )
    parser.add_argument(
        "--cases", help="comma-separated subset of: " + ",".join(n for n, _ in ORDER)
    )
    parser.add_argument(
        "--max-batch-tokens", type=int, help="our token budget per batch (default: fixed 64 texts)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads in every case (default: torch's, = cores)"
    )
    parser.add_argument(
        "--out", type=Path, help="JSON output (default benchmarks/results[-quick].json)"
    )
    parser.add_argument(
        "--markdown",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="update BENCHMARKS.md (default: on for full runs, off for --quick)",
    )
    parser.add_argument(
        "--with-losses", action="store_true", help="also run benchmarks/bench_losses.py"
    )
    parser.add_argument(
        "--page", type=Path, default=ROOT / "BENCHMARKS.md", help="the page --markdown updates"
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: rebuild the table (and, with --markdown, the page) from a saved run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args(argv)
    command = shlex.join(
        ["python", "benchmarks/run_all.py", *(sys.argv[1:] if argv is None else argv)]
    )

    if args.render:
        render(args.render, args.page, markdown_too=bool(args.markdown))
        return

    from twotower.data.locate import locate_collection

    workdir = Path(tempfile.mkdtemp(prefix="twotower-bench-"))
    source = locate_collection(args.data, download=False)
    data = quick_collection(source, workdir / "data", args.docs) if args.quick else source
    cfg = {
        "quick": args.quick,
        "data": str(data),
        "train_data": str(source),
        "workdir": str(workdir),
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "train_steps": args.steps or (3 if args.quick else 10),
        "st_batch_size": 32,
        "tt_batch_size": 64,
        "negatives": 3,
        "window": [11, 100],
        "threads": args.threads,
        "max_batch_tokens": args.max_batch_tokens,
    }
    names = [n for n, _ in ORDER]
    wanted = set(args.cases.split(",")) if args.cases else set(names)
    unknown = wanted - set(names)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    added = {NEEDS[n] for n in wanted if n in NEEDS} - wanted
    if added:
        print(f"also running {', '.join(sorted(added))}: the cached cases need their caches filled")
        wanted |= added
    tokens = corpus_tokens(data, cfg["max_length"])
    from twotower.data import load_collection

    cfg.update(
        tokens=tokens,
        docs=len(load_collection(data, "test").corpus),
        data_label=f"{source.name}" + (f" subset ({args.docs} docs)" if args.quick else ""),
    )
    load_start = os.getloadavg()[0]
    results: dict[str, dict] = {}
    log_path = workdir / "cases.log"
    print(f"work folder {workdir} (per-case output in {log_path.name})", flush=True)
    with log_path.open("w") as log:
        for name, group in ORDER:
            if name not in wanted:
                continue
            print(f"  {name} ...", end="", flush=True)
            results[name] = run_case(name, cfg, workdir / f"cache-{group}", log)
            shown = results[name].get("seconds", results[name].get("s_per_step"))
            print(f" {shown:.2f} s, peak {results[name]['peak_rss_mib']:,.0f} MiB", flush=True)
    load_end = os.getloadavg()[0]
    rows = summarise(results, tokens, cfg)
    report = {
        "command": command,
        "machine": machine(),
        "config": cfg,
        "load_avg": [load_start, load_end],
        "rows": rows,
        "quality": quality(results),
        "cases": results,
        "targets": TARGETS,
    }
    out = args.out or HERE / ("results-quick.json" if args.quick else "results.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(rows))
    q = report["quality"] or {}
    if "delta" in q:
        print(
            f"\nNDCG@10: fp32 {q['ndcg@10_fp32']:.4f}, fast {q['ndcg@10_fast']:.4f}"
            f" (Δ {q['delta']:+.4f})"
        )
    print(f"\nwrote {out}")
    if args.markdown if args.markdown is not None else not args.quick:
        write_markdown(markdown(report), args.page)
        print(f"updated {args.page}")
    if args.with_losses:
        subprocess.run([sys.executable, str(HERE / "bench_losses.py")], check=False)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
