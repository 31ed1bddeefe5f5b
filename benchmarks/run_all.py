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

from sections import markers, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTION = "speed"
START, END = markers(SECTION)
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

# sentence-transformers' configurations per measure: (case, label); the first is its default.
ST_DEFAULT = "fp32 (default)"
ST_AUTOCAST = "autocast bf16"
ST_CONFIGS = {
    "train": (("st_train", ST_DEFAULT), ("st_train_bf16", "bf16=True")),
    "encode": (
        ("st_encode", ST_DEFAULT),
        ("st_encode_autocast", ST_AUTOCAST),
        ("st_encode_bf16", "bf16 weights"),
    ),
    "mine_cold": (("st_mine_cold", ST_DEFAULT), ("st_mine_cold_autocast", ST_AUTOCAST)),
    "mine_warm": (("st_mine_warm", ST_DEFAULT), ("st_mine_warm_autocast", ST_AUTOCAST)),
    "eval_cold": (("st_eval_cold", ST_DEFAULT), ("st_eval_cold_autocast", ST_AUTOCAST)),
    "eval_cached": (("st_eval_cached", ST_DEFAULT), ("st_eval_cached_autocast", ST_AUTOCAST)),
}
ST_LEGEND = (
    "ST configurations: fp32 (default) = as installed; bf16=True ="
    " `SentenceTransformerTrainingArguments(bf16=True)`; autocast bf16 = the call (`encode`,"
    ' `mine_hard_negatives`, the evaluator) inside `torch.autocast("cpu", dtype=torch.bfloat16)`;'
    " bf16 weights = `model.to(torch.bfloat16)` before `encode`. ST best = the fastest of those"
    " measured for that row."
)


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
    """One row per measure: ST's default and its best configuration, twotower's fast path and
    fp32, and the ratios (> 1: twotower faster): ``ratio_fast`` fast path / ST best,
    ``ratio_fast_default`` fast path / ST default, ``ratio_fp32`` ours fp32 / ST default."""
    rows = []

    def add(
        what,
        unit,
        measure,
        st_value,
        fast_key,
        off_key=None,
        tt_value=None,
        higher_better=False,
        target=None,
        off_target=None,
        peak=True,
    ):
        measured = [(key, label) for key, label in ST_CONFIGS[measure] if r.get(key)]
        if not measured:
            return
        tt_value = tt_value or st_value
        figures = {label: st_value(r[key]) for key, label in measured}
        default_key = ST_CONFIGS[measure][0][0]
        default = st_value(r[default_key]) if r.get(default_key) else None
        pick = max if higher_better else min
        best_key, best_label = pick(measured, key=lambda kl: st_value(r[kl[0]]))
        best = figures[best_label]
        fast = tt_value(r[fast_key]) if r.get(fast_key) else None
        off = tt_value(r[off_key]) if off_key and r.get(off_key) else None

        def ratio(x, ref):
            if x is None or ref is None:
                return None
            return (x / ref) if higher_better else (ref / x)

        peaks = None
        if peak:
            cases = (
                ("st", r.get(default_key)),
                ("st_best", r[best_key]),
                ("tt_fast", r.get(fast_key)),
                ("tt_fp32", r.get(off_key) if off_key else None),
            )
            peaks = {k: v["peak_rss_mib"] for k, v in cases if v and "peak_rss_mib" in v}
        rows.append(
            {
                "what": what,
                "measure": measure,
                "unit": unit,
                "higher_better": higher_better,
                "st": default,
                "st_best": best,
                "st_best_config": best_label,
                "st_best_case": best_key,
                "st_configs": figures,
                "st_configs_missing": [
                    label for key, label in ST_CONFIGS[measure] if not r.get(key)
                ],
                "tt_fast": fast,
                "ratio_fast": ratio(fast, best),
                "ratio_fast_default": ratio(fast, default),
                "tt_fp32": off,
                "ratio_fp32": ratio(off, default),
                "target_fast": target,
                "target_fp32": off_target,
                "peak_mib": peaks,
            }
        )

    add(
        "training: s/step",
        "s",
        "train",
        lambda c: c["s_per_step"],
        "tt_train_auto",
        "tt_train_fp32",
        target=TARGETS["train"],
        off_target=TARGETS["train_off"],
    )
    add(
        "training: pairs/s",
        "pairs/s",
        "train",
        lambda c: c["pairs_per_s"],
        "tt_train_auto",
        "tt_train_fp32",
        higher_better=True,
        target=TARGETS["train"],
        off_target=TARGETS["train_off"],
        peak=False,
    )

    # ours: the corpus encoding inside the cold evaluation
    def tt_docs(c):
        return c["docs"] / c["timings"]["corpus_encode_s"]

    def tt_tokens(c):
        return tokens / c["timings"]["corpus_encode_s"]

    for what, unit, st_value, tt_value, peak in (
        ("encoding: docs/s", "docs/s", lambda c: c["docs"] / c["seconds"], tt_docs, True),
        ("encoding: tokens/s", "tok/s", lambda c: tokens / c["seconds"], tt_tokens, False),
    ):
        add(
            what,
            unit,
            "encode",
            st_value,
            "tt_eval_cold_auto",
            "tt_eval_cold_fp32",
            tt_value=tt_value,
            higher_better=True,
            target=TARGETS["encode"],
            off_target=TARGETS["encode_off"],
            peak=peak,
        )

    def seconds(c):
        return c["seconds"]

    add("mining, cold: wall s", "s", "mine_cold", seconds, "tt_mine_cold", target=TARGETS["mine"])
    add(
        "mining, warm (embeddings cached): wall s",
        "s",
        "mine_warm",
        seconds,
        "tt_mine_warm",
        target=TARGETS["mine"],
    )
    add(
        "mining, warm (ours: mined table cached): wall s",
        "s",
        "mine_warm",
        seconds,
        "tt_mine_warm_table",
    )
    add(
        "evaluation, cold: wall s",
        "s",
        "eval_cold",
        seconds,
        "tt_eval_cold_auto",
        "tt_eval_cold_fp32",
    )
    add(
        "evaluation, cached: wall s",
        "s",
        "eval_cached",
        seconds,
        "tt_eval_cached_auto",
        "tt_eval_cached_fp32",
        target=TARGETS["eval_cached"],
    )
    return rows


def quality(r: dict) -> dict | None:
    """NDCG@10 of every evaluation that ran, and how far ST's bf16 embeddings are from fp32."""
    out: dict = {}
    if "tt_eval_cold_fp32" in r and "tt_eval_cold_auto" in r:
        fp32, fast = r["tt_eval_cold_fp32"]["ndcg@10"], r["tt_eval_cold_auto"]["ndcg@10"]
        out.update(
            {
                "ndcg@10_fp32": fp32,
                "ndcg@10_fast": fast,
                "delta": fast - fp32,
                "within": abs(fast - fp32) <= TARGETS["quality"],
            }
        )
    elif "tt_eval_cold_auto" in r:
        out["ndcg@10_fast"] = r["tt_eval_cold_auto"]["ndcg@10"]
    if "tt_eval_cold_auto" in r:
        out["fast_is_bf16"] = r["tt_eval_cold_auto"]["bf16"]
    if "st_eval_cold" in r:
        out["ndcg@10_st"] = r["st_eval_cold"]["ndcg@10"]
    if "st_eval_cold_autocast" in r:
        out["ndcg@10_st_autocast"] = r["st_eval_cold_autocast"]["ndcg@10"]
    for key in ("st_encode_autocast", "st_encode_bf16"):
        if "cosine_to_fp32_mean" in r.get(key, {}):
            out[f"{key}_cosine_to_fp32"] = [
                r[key]["cosine_to_fp32_mean"],
                r[key]["cosine_to_fp32_min"],
            ]
    return out or None


def fmt(x, unit="") -> str:
    if x is None:
        return "—"
    if unit in ("tok/s",):
        return f"{x:,.0f}"
    return f"{x:,.2f}" if abs(x) < 100 else f"{x:,.0f}"


def table(rows: list[dict]) -> str:
    head = (
        "| measure | ST default (fp32) | ST best | ST best config | twotower, fast path (auto)"
        " | × vs ST best | × vs ST default | twotower, fp32 | × fp32 vs ST default | target ×"
        " | peak MiB (ST default / ST best / fast / fp32) |\n"
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|"
    )
    lines = [head]
    for row in rows:

        def x(v, t=None):
            if v is None:
                return "—"
            mark = "" if t is None else (" ✓" if v >= t else " ✗")
            return f"{v:.2f}{mark}"

        target = (
            "/".join(f"{t:g}" for t in (row["target_fast"], row["target_fp32"]) if t is not None)
            or "—"
        )
        peak = row.get("peak_mib") or {}
        peak_s = (
            " / ".join(
                f"{peak[k]:,.0f}" if k in peak else "—"
                for k in ("st", "st_best", "tt_fast", "tt_fp32")
            )
            if peak
            else ""
        )
        config = row.get("st_best_config", ST_DEFAULT)
        if row.get("st_configs_missing"):
            config += " (not run: " + ", ".join(row["st_configs_missing"]) + ")"
        unit = row["unit"]
        lines.append(
            f"| {row['what']} | {fmt(row['st'], unit)} | {fmt(row.get('st_best'), unit)}"
            f" | {config} | {fmt(row['tt_fast'], unit)}"
            f" | {x(row['ratio_fast'], row['target_fast'])} | {x(row.get('ratio_fast_default'))}"
            f" | {fmt(row['tt_fp32'], unit)} | {x(row['ratio_fp32'], row['target_fp32'])}"
            f" | {target} | {peak_s} |"
        )
    return "\n".join(lines)


def _ratio_text(row: dict | None, key: str = "ratio_fast") -> str:
    value = row and row.get(key)
    return "—" if value is None else f"{value:.2f}×"


def _against(row: dict) -> str:
    """What the row's fast-path ratio is against, in words."""
    fast, missing = _ratio_text(row), row.get("st_configs_missing") or []
    if row["st_best_config"] == ST_DEFAULT and missing:
        return (
            f"{fast} against ST's fp32 default only: its {', '.join(missing)} not measured in"
            " this run, to be re-measured"
        )
    if row["st_best_config"] == ST_DEFAULT:
        return f"{fast} against ST's best, which is its fp32 default"
    text = f"{fast} against ST's best, {row['st_best_config']}"
    if row.get("ratio_fast_default") is not None:
        text += f"; {_ratio_text(row, 'ratio_fast_default')} against its fp32 default"
    if missing:
        text += f"; ST {', '.join(missing)} not measured in this run"
    return text


def _equal_precision(row: dict) -> str:
    if row.get("ratio_fp32") is None:
        return ""
    return f"; twotower fp32 against ST fp32: {_ratio_text(row, 'ratio_fp32')}"


def where_from(rows: list[dict]) -> list[str]:
    """The prose under the table: per measure, what the ratio is against and where twotower's
    time differs from sentence-transformers'. Rows without a twotower figure get none."""
    first: dict[str, dict] = {}
    for row in rows:
        if row.get("tt_fast") is not None:
            first.setdefault(row["measure"], row)
    out = []
    if row := first.get("train"):
        out.append(
            f"- **Training** ({_against(row)}{_equal_precision(row)}): "
            + " ".join(
                [
                    "both sides run sentence-transformers' `SentenceTransformerTrainer`, and",
                    "twotower's fast path is that trainer with bf16 autocast, which an ST user",
                    "gets with `bf16=True`. A gain over ST's fp32 default is therefore mostly",
                    "bf16's, not twotower's; what differs at equal precision is twotower's loss",
                    "implementation (see the loss micro-benchmark below).",
                ]
            )
        )
    if row := first.get("encode"):
        out.append(
            f"- **Encoding** ({_against(row)}{_equal_precision(row)}): "
            + " ".join(
                [
                    "twotower's fast path is bf16 autocast, the arithmetic of ST's autocast",
                    "column. What differs is the batching: twotower tokenises each distinct text",
                    "once, in blocks of 32,768, sorts by token count (little padding) and runs 64",
                    "texts a batch; ST tokenises per batch of 32 (its default), sorted by",
                    "character count.",
                ]
            )
        )
    if row := first.get("mine_cold"):
        out.append(
            f"- **Mining, cold** ({_against(row)}): mostly encoding the corpus and the training"
            " queries, so it follows the encoding row."
        )
    warm = [r for r in rows if r["measure"] == "mine_warm" and r.get("tt_fast") is not None]
    if warm:
        plain = next((r for r in warm if "table" not in r["what"]), None)
        table_row = next((r for r in warm if "table" in r["what"]), None)
        said = [f"embeddings cached: {_against(plain)}"] if plain else []
        if table_row:
            said.append(f"mined table cached: {_ratio_text(table_row)}")
        out.append(
            f"- **Mining, warm** ({'; '.join(said)}): "
            + " ".join(
                [
                    "both read cached embeddings. ST's `cache_folder` is keyed by the model's",
                    "name and the texts, not by its weights or precision (a fine-tuned model that",
                    "keeps its base model's name can be handed the old embeddings); twotower's",
                    "cache is keyed by the weights, the encoding settings and the texts. twotower",
                    "also caches the mined table itself, keyed by all its inputs, which ST does",
                    "not offer: that row is a saving from the cache, not from faster search.",
                ]
            )
        )
    if row := first.get("eval_cold"):
        out.append(
            f"- **Evaluation, cold** ({_against(row)}): almost all of it is encoding the corpus,"
            " so it follows the encoding row."
        )
    if row := first.get("eval_cached"):
        out.append(
            f"- **Evaluation, cached** ({_against(row)}): "
            + " ".join(
                [
                    "a gain from caching, which ST's evaluator does not have. twotower keeps",
                    "corpus and query embeddings on disk, keyed by the tower's weights, its",
                    "settings and the texts, so a second evaluation of the same model on the same",
                    "collection encodes nothing and only searches. The nearest an ST user gets",
                    "(the ST columns) is saving the corpus embeddings and passing them back as",
                    "`corpus_embeddings`; its evaluator still encodes the queries every time.",
                ]
            )
        )
    if out:
        out.append(
            "- **Not in this table:** the quickstart recipe (section above) trains the query"
            " tower against a frozen document index, so its corpus embeddings come from the same"
            " cache and neither its training nor its evaluation re-encodes a corpus; ST has no"
            " built-in counterpart, and that saving shows in the quickstart's wall time only."
        )
    return out


def markdown(report: dict) -> str:
    m, cfg, q = report["machine"], report["config"], report["quality"]
    rows = report["rows"]
    missing = sorted({label for row in rows for label in row.get("st_configs_missing", [])})
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
        "× = twotower's speed over sentence-transformers' (> 1: twotower faster): the fast path"
        " against ST best (✓/✗ against the target), the fast path against ST's default, and"
        " twotower fp32 against ST's default fp32 (✓/✗ against the second target).",
        "Fast path (auto) = bf16 autocast where the CPU/GPU has bf16 (here: "
        f"{'yes' if q and q.get('fast_is_bf16') else 'no'}), fp32 otherwise.",
        ST_LEGEND,
        "",
    ]
    if missing:
        lines += [
            f"**Not measured in this run: ST {', '.join(missing)}.** Where a row says so, its"
            ' "ST best" is only the best of what ran, and its ratio against ST best is to be'
            " re-measured with `python benchmarks/run_all.py`.",
            "",
        ]
    lines += [table(rows), ""]
    if q:
        parts = []
        if "delta" in q:
            parts.append(
                f"twotower fp32 {q['ndcg@10_fp32']:.4f}, fast path {q['ndcg@10_fast']:.4f}"
                f" (Δ {q['delta']:+.4f}; limit ±{TARGETS['quality']}:"
                f" {'within' if q['within'] else 'OUTSIDE'})"
            )
        elif "ndcg@10_fast" in q:
            parts.append(f"twotower fast path {q['ndcg@10_fast']:.4f}")
        if "ndcg@10_st" in q:
            parts.append(f"sentence-transformers' evaluator {q['ndcg@10_st']:.4f}")
        if "ndcg@10_st_autocast" in q:
            parts.append(f"the same inside autocast {q['ndcg@10_st_autocast']:.4f}")
        if parts:
            lines.append(
                f"Quality, test-split NDCG@10 ({cfg['data_label']}): " + "; ".join(parts) + "."
            )
        agreement = [
            f"{label} {q[key][0]:.5f} (min {q[key][1]:.4f})"
            for key, label in (
                ("st_encode_autocast_cosine_to_fp32", "autocast bf16"),
                ("st_encode_bf16_cosine_to_fp32", "bf16 weights"),
            )
            if key in q
        ]
        if agreement:
            lines.append(
                "ST's corpus embeddings against its fp32 ones, mean cosine per document: "
                + ", ".join(agreement)
                + "."
            )
        lines.append("")
    notes = where_from(rows)
    if notes:
        lines += ["Where the differences come from:", "", *notes, ""]
    lines.append(END)
    return "\n".join(lines)


def write_markdown(section: str, path: Path) -> None:
    write_section(path, section, SECTION)


def render(results: Path, page: Path, *, markdown_too: bool) -> None:
    """Rebuild rows, quality and (with ``markdown_too``) the page's section from a saved run."""
    report = json.loads(results.read_text())
    cases, cfg = report["cases"], report["config"]
    report["rows"] = summarise(cases, cfg["tokens"], cfg)
    report["quality"] = quality(cases)
    print(table(report["rows"]))
    if markdown_too:
        write_markdown(markdown(report), page)
        print(f"updated {page}")


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
