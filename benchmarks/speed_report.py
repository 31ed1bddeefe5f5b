"""The speed benchmark's report (benchmarks/run_all.py): its cases' measurements summarised per
measure (twotower's fast path against sentence-transformers' best configuration and its default),
the table, where each gain comes from, and BENCHMARKS.md's ``speed`` section.

    python benchmarks/run_all.py --render benchmarks/results.json   # this module alone
"""

from __future__ import annotations

import json
from pathlib import Path

from sections import markers, write_section

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
