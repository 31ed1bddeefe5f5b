"""Speed benchmark: twotower against what a sentence-transformers user would run, side by side.

    .venv/bin/python benchmarks/run_all.py            # full: SciFact, ~30 min on 2 quiet cores
    .venv/bin/python benchmarks/run_all.py --quick    # 300 documents, 3 training steps (~5 min)

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

Ratios are twotower's speed over sentence-transformers' (> 1: twotower is faster). Results go
to ``benchmarks/results.json`` (``results-quick.json`` with ``--quick``) and, for full runs or
with ``--markdown``, to the section of BENCHMARKS.md between the ``speed`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START, END = "<!-- speed:start -->", "<!-- speed:end -->"
TARGETS = {
    "train": 1.5,
    "train_off": 1.0,
    "encode": 1.5,
    "encode_off": 1.0,
    "mine": 2.0,
    "eval_cached": 2.0,
    "quality": 0.005,
}

ORDER = [
    # encoding + evaluation (ours: the cold evaluation's corpus encoding is the encoding figure)
    ("st_encode", "eval"),
    ("tt_eval_cold_fp32", "eval"),
    ("tt_eval_cold_auto", "eval"),
    ("st_eval_cold", "eval"),
    ("st_eval_cached", "eval"),
    ("tt_eval_cached_fp32", "eval"),
    ("tt_eval_cached_auto", "eval"),
    # mining, with its own empty caches so that cold is cold
    ("st_mine_cold", "mine"),
    ("tt_mine_cold", "mine"),
    ("st_mine_warm", "mine"),
    ("tt_mine_warm", "mine"),
    ("tt_mine_warm_table", "mine"),
    # training
    ("st_train", "train"),
    ("tt_train_fp32", "train"),
    ("tt_train_auto", "train"),
]


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


def summarise(r: dict, tokens: int, cfg: dict) -> list[dict]:
    """Rows: what, unit, ST figure, ours fast, ratio, ours fp32, ratio (ratios: ours faster > 1)."""
    rows = []

    def add(
        what, unit, st, fast, off=None, higher_better=False, target=None, off_target=None, peak=None
    ):
        def ratio(x):
            if x is None or st is None:
                return None
            return (x / st) if higher_better else (st / x)

        rows.append(
            {
                "what": what,
                "unit": unit,
                "st": st,
                "tt_fast": fast,
                "ratio_fast": ratio(fast),
                "tt_fp32": off,
                "ratio_fp32": ratio(off),
                "target_fast": target,
                "target_fp32": off_target,
                "peak_mib": peak,
            }
        )

    g = r.get
    if "st_train" in r:
        st, fp, au = g("st_train"), g("tt_train_fp32"), g("tt_train_auto")
        peak = {
            k: v["peak_rss_mib"] for k, v in (("st", st), ("tt_fast", au), ("tt_fp32", fp)) if v
        }
        add(
            "training: s/step",
            "s",
            st["s_per_step"],
            au and au["s_per_step"],
            fp and fp["s_per_step"],
            target=TARGETS["train"],
            off_target=TARGETS["train_off"],
            peak=peak,
        )
        add(
            "training: pairs/s",
            "pairs/s",
            st["pairs_per_s"],
            au and au["pairs_per_s"],
            fp and fp["pairs_per_s"],
            higher_better=True,
            target=TARGETS["train"],
            off_target=TARGETS["train_off"],
        )
    if "st_encode" in r:
        st, fp, au = g("st_encode"), g("tt_eval_cold_fp32"), g("tt_eval_cold_auto")
        docs = st["docs"]
        enc = lambda x: x and x["timings"]["corpus_encode_s"]  # noqa: E731
        peak = {
            k: v["peak_rss_mib"] for k, v in (("st", st), ("tt_fast", au), ("tt_fp32", fp)) if v
        }
        add(
            "encoding: docs/s",
            "docs/s",
            docs / st["seconds"],
            au and docs / enc(au),
            fp and docs / enc(fp),
            higher_better=True,
            target=TARGETS["encode"],
            off_target=TARGETS["encode_off"],
            peak=peak,
        )
        add(
            "encoding: tokens/s",
            "tok/s",
            tokens / st["seconds"],
            au and tokens / enc(au),
            fp and tokens / enc(fp),
            higher_better=True,
            target=TARGETS["encode"],
            off_target=TARGETS["encode_off"],
        )
    for label, st_key, tt_key, target in (
        ("mining, cold: wall s", "st_mine_cold", "tt_mine_cold", TARGETS["mine"]),
        (
            "mining, warm (embeddings cached): wall s",
            "st_mine_warm",
            "tt_mine_warm",
            TARGETS["mine"],
        ),
        (
            "mining, warm (ours: mined table cached): wall s",
            "st_mine_warm",
            "tt_mine_warm_table",
            None,
        ),
    ):
        if st_key in r and tt_key in r:
            add(
                label,
                "s",
                r[st_key]["seconds"],
                r[tt_key]["seconds"],
                target=target,
                peak={"st": r[st_key]["peak_rss_mib"], "tt_fast": r[tt_key]["peak_rss_mib"]},
            )
    for label, st_key, fast_key, off_key, target in (
        (
            "evaluation, cold: wall s",
            "st_eval_cold",
            "tt_eval_cold_auto",
            "tt_eval_cold_fp32",
            None,
        ),
        (
            "evaluation, cached: wall s",
            "st_eval_cached",
            "tt_eval_cached_auto",
            "tt_eval_cached_fp32",
            TARGETS["eval_cached"],
        ),
    ):
        if st_key in r:
            fast, off = r.get(fast_key), r.get(off_key)
            add(
                label,
                "s",
                r[st_key]["seconds"],
                fast and fast["seconds"],
                off and off["seconds"],
                target=target,
                peak={
                    k: v["peak_rss_mib"]
                    for k, v in (("st", r[st_key]), ("tt_fast", fast), ("tt_fp32", off))
                    if v
                },
            )
    return rows


def quality(r: dict) -> dict | None:
    if "tt_eval_cold_fp32" not in r or "tt_eval_cold_auto" not in r:
        return None
    fp32, fast = r["tt_eval_cold_fp32"]["ndcg@10"], r["tt_eval_cold_auto"]["ndcg@10"]
    out = {
        "ndcg@10_fp32": fp32,
        "ndcg@10_fast": fast,
        "fast_is_bf16": r["tt_eval_cold_auto"]["bf16"],
        "delta": fast - fp32,
        "within": abs(fast - fp32) <= TARGETS["quality"],
    }
    if "st_eval_cold" in r:
        out["ndcg@10_st"] = r["st_eval_cold"]["ndcg@10"]
    return out


def fmt(x, unit="") -> str:
    if x is None:
        return "—"
    if unit in ("tok/s",):
        return f"{x:,.0f}"
    return f"{x:,.2f}" if abs(x) < 100 else f"{x:,.0f}"


def table(rows: list[dict]) -> str:
    head = (
        "| measure | sentence-transformers | twotower, fast path (auto) | × | twotower, fp32 | × | target × "
        "| peak MiB (ST / fast / fp32) |\n|---|---:|---:|---:|---:|---:|---|---|"
    )
    lines = [head]
    for row in rows:

        def x(v, t):
            if v is None:
                return "—"
            mark = "" if t is None else (" ✓" if v >= t else " ✗")
            return f"{v:.2f}{mark}"

        target = (
            "/".join(f"{t:g}" for t in (row["target_fast"], row["target_fp32"]) if t is not None)
            or "—"
        )
        peak = row["peak_mib"] or {}
        peak_s = (
            " / ".join(
                f"{peak[k]:,.0f}" if k in peak else "—" for k in ("st", "tt_fast", "tt_fp32")
            )
            if peak
            else ""
        )
        lines.append(
            f"| {row['what']} | {fmt(row['st'], row['unit'])} | {fmt(row['tt_fast'], row['unit'])} "
            f"| {x(row['ratio_fast'], row['target_fast'])} | {fmt(row['tt_fp32'], row['unit'])} "
            f"| {x(row['ratio_fp32'], row['target_fp32'])} | {target} | {peak_s} |"
        )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    m, cfg, q = report["machine"], report["config"], report["quality"]
    lines = [
        START,
        "## Speed: twotower vs sentence-transformers" + (" (quick mode)" if cfg["quick"] else ""),
        "",
        f"Generated by `{report['command']}` on {m['date']}.",
        f"Machine: {m['cpu']}, {m['cores']} cores (torch threads {m['torch_threads']}), avx512_bf16={m['avx512_bf16']},"
        f" amx_bf16={m['amx_bf16']}, GPU: {m['gpu'] or 'none'}; 1-min load average {report['load_avg'][0]:.1f} at"
        f" start, {report['load_avg'][1]:.1f} at end (other jobs share this machine; ratios are more trustworthy"
        " than absolute figures).",
        f"Versions: torch {m['torch']}, sentence-transformers {m['sentence_transformers']}, transformers"
        f" {m['transformers']}, Python {m['python']}.",
        f"Data: {cfg['data_label']} ({cfg['docs']:,} documents, {cfg['tokens']:,} tokens at max length"
        f" {cfg['max_length']}); training: batch {cfg['batch_size']}, {cfg['train_steps']} steps, max length"
        f" {cfg['max_length']}; ST batch size {cfg['st_batch_size']} (its default), ours {cfg['tt_batch_size']}.",
        "",
        "× = twotower's speed over sentence-transformers' (> 1: twotower faster); ✓/✗ against the target.",
        "Fast path (auto) = bf16 autocast where the CPU/GPU has bf16 (here: "
        f"{'yes' if q and q['fast_is_bf16'] else 'no'}), fp32 otherwise.",
        "",
        table(report["rows"]),
        "",
    ]
    if q:
        lines.append(
            f"Quality, SciFact-test NDCG@10 ({cfg['data_label']}): fp32 {q['ndcg@10_fp32']:.4f}, fast path"
            f" {q['ndcg@10_fast']:.4f} (Δ {q['delta']:+.4f}; limit ±{TARGETS['quality']}: "
            f"{'within' if q['within'] else 'OUTSIDE'})"
            + (
                f"; sentence-transformers' evaluator {q['ndcg@10_st']:.4f}."
                if "ndcg@10_st" in q
                else "."
            )
        )
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_markdown(section: str, path: Path) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 documents, 3 training steps")
    parser.add_argument(
        "--data", default="scifact", help="BEIR collection (name or folder); default scifact"
    )
    parser.add_argument("--docs", type=int, default=300, help="documents in --quick mode")
    parser.add_argument("--steps", type=int, help="training steps (default 10; 3 with --quick)")
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
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args(argv)

    from twotower.data.locate import locate_collection

    workdir = Path(tempfile.mkdtemp(prefix="twotower-bench-"))
    source = locate_collection(args.data, download=False)
    data = quick_collection(source, workdir / "data", args.docs) if args.quick else source
    cfg = {
        "quick": args.quick,
        "data": str(data),
        "train_data": str(source),
        "workdir": str(workdir),
        "max_length": 256,
        "batch_size": 32,
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
        "command": "python benchmarks/run_all.py" + (" --quick" if args.quick else ""),
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
    if report["quality"]:
        q = report["quality"]
        print(
            f"\nNDCG@10: fp32 {q['ndcg@10_fp32']:.4f}, fast {q['ndcg@10_fast']:.4f} (Δ {q['delta']:+.4f})"
        )
    print(f"\nwrote {out}")
    if args.markdown if args.markdown is not None else not args.quick:
        write_markdown(markdown(report), ROOT / "BENCHMARKS.md")
        print(f"updated {ROOT / 'BENCHMARKS.md'}")
    if args.with_losses:
        subprocess.run([sys.executable, str(HERE / "bench_losses.py")], check=False)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
