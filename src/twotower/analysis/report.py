"""probe.md (a table and the figures) and probe.json (every number behind every figure)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .probe import ModelProbe, ProbeResult

SCHEMA_VERSION = 1

FIGURE_TITLES = {
    "tsne.png": "t-SNE of the two towers",
    "top1_similarity.png": "Top-1 retrieved similarity",
    "negative_sampling.png": "Softmax over the hardest negatives (DANCE)",
    "alignment_uniformity.png": "Alignment and uniformity",
    "anisotropy.png": "Anisotropy and centroid gap",
}

FIGURE_CAPTIONS = {
    "tsne.png": (
        "t-SNE of a sample of queries (blue) and documents (orange), fitted jointly per model; "
        "faint lines join a query to its relevant documents: short lines and mixed colours mean "
        "the towers share one region, two separate clouds mean a gap between the towers."
    ),
    "top1_similarity.png": (
        "For each judged query, the similarity of its top-1 retrieved document, green when that "
        "document is relevant and red when not: the further apart the two histograms, the "
        "better the score alone tells a hit from a miss (AUC in the title)."
    ),
    "negative_sampling.png": (
        "DANCE's view: per query (blue) or per document for the dual task (orange), the "
        "normalised entropy of the model's softmax over its top-k non-relevant candidates at "
        "the training temperature; mass near 0 means one hard negative dominates the "
        "contrastive gradient, near 1 that it is spread evenly."
    ),
    "alignment_uniformity.png": (
        "The Wang & Isola plane: alignment of positive pairs (y) against uniformity (x) of the "
        "queries, the documents and both pooled (colours), one marker shape per model; "
        "lower-left is better on both."
    ),
    "anisotropy.png": (
        "Left, the mean pairwise cosine within each tower (near 1: the embeddings occupy a "
        "narrow cone); right, the distance between the query and document centroids (0: "
        "the towers are centred on the same point)."
    ),
}


def _jsonable(obj: Any, digits: int = 7) -> Any:
    """Dataclasses, numpy arrays and scalars to plain JSON values; NaN / inf become null.

    Floats keep ``digits`` significant digits (float32 inputs carry no more).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _jsonable(getattr(obj, f.name), digits)
            for f in dataclasses.fields(obj)
            if not f.name.startswith("_")
        }
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, digits) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), digits)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return float(f"{x:.{digits}g}") if math.isfinite(x) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _model_numbers(m: ModelProbe) -> dict:
    return {
        "similarity": m.similarity,
        "temperature": m.temperature,
        "dim": m.dim,
        "n_queries": m.n_queries,
        "n_documents": m.n_documents,
        "n_judged_queries": m.n_judged_queries,
        "n_positive_pairs": m.n_positive_pairs,
        "norms": m.norms,
        "summary": m.summary(),
        "alignment": m.alignment,
        "uniformity": m.uniformity,
        "anisotropy": m.anisotropy,
        "top1": {
            "hit_rate": m.top1.hit_rate,
            "auc": m.top1.auc,
            "relevant": m.top1.relevant,
            "non_relevant": m.top1.non_relevant,
            "all": m.top1.all,
        },
        "negatives": _negatives_numbers(m.negatives),
        "dual_negatives": _negatives_numbers(m.dual_negatives),
        "tsne": None
        if m.tsne is None
        else {"perplexity": m.tsne.perplexity, "kl_divergence": m.tsne.kl_divergence},
    }


def _negatives_numbers(ns) -> dict | None:
    if ns is None:
        return None
    return {
        "direction": ns.direction,
        "k": ns.k,
        "temperature": ns.temperature,
        "n_anchors": int(len(ns.entropy)),
        "entropy": ns.entropy_summary,
        "max_prob": ns.max_prob_summary,
    }


def _figure_data(result: ProbeResult) -> dict:
    figs: dict[str, dict] = {}
    tsne = {}
    for m in result.models:
        if m.tsne is None:
            continue
        t = m.tsne
        tsne[m.name] = {
            "query_ids": t.query_ids,
            "doc_ids": t.doc_ids,
            "query_xy": t.query_coords,
            "doc_xy": t.doc_coords,
            "pairs": t.pairs,
        }
    if tsne:
        figs["tsne.png"] = tsne
    figs["top1_similarity.png"] = {
        m.name: {
            "query_rows": m.top1.query_rows,
            "doc_rows": m.top1.doc_rows,
            "score": m.top1.scores,
            "is_relevant": m.top1.is_relevant,
        }
        for m in result.models
    }
    figs["negative_sampling.png"] = {
        m.name: {
            ns.direction: {
                "anchor_rows": ns.anchor_rows,
                "entropy": ns.entropy,
                "max_prob": ns.max_prob,
                "n_negatives": ns.n_negatives,
            }
            for ns in (m.negatives, m.dual_negatives)
            if ns is not None
        }
        for m in result.models
    }
    figs["alignment_uniformity.png"] = {
        m.name: {"alignment": m.alignment, "uniformity": m.uniformity} for m in result.models
    }
    figs["anisotropy.png"] = {
        m.name: {
            "query_mean_cosine": m.anisotropy.query_mean_cosine,
            "document_mean_cosine": m.anisotropy.document_mean_cosine,
            "centroid_distance": m.anisotropy.centroid.distance,
            "centroid_cosine": m.anisotropy.centroid.cosine,
        }
        for m in result.models
    }
    return figs


def result_to_dict(result: ProbeResult) -> dict:
    """The content of probe.json. Row indices refer to the rows of each model's input arrays."""
    return _jsonable(
        {
            "schema_version": SCHEMA_VERSION,
            "data": result.data,
            "split": result.split,
            "settings": result.settings,
            "models": {m.name: _model_numbers(m) for m in result.models},
            "figures": _figure_data(result),
        }
    )


def write_json(result: ProbeResult, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(result_to_dict(result), indent=1, allow_nan=False) + "\n")
    return path


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.3f}"


def summary_table(result: ProbeResult, models: Sequence[str] | None = None) -> str:
    """Markdown table: one row per headline measure, one column per model."""
    from .probe import SUMMARY_LABELS

    chosen = [result.model(n) for n in models] if models is not None else result.models
    sums = [m.summary() for m in chosen]
    header = "| measure | " + " | ".join(_md_escape(m.name) for m in chosen) + " |"
    sep = "|---|" + "---:|" * len(chosen)
    lines = [header, sep]
    for key, label in SUMMARY_LABELS.items():
        vals = [s[key] for s in sums]
        if all(not math.isfinite(v) for v in vals) and key.startswith("dual_"):
            continue
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in vals) + " |")
    return "\n".join(lines)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def write_markdown(result: ProbeResult, path: str | Path) -> Path:
    """probe.md: what was probed, the summary table, each figure with one sentence to read it."""
    path = Path(path)
    s = result.settings
    where = " / ".join(x for x in (result.data, result.split) if x)
    lines = [f"# Embedding-space probe{f' — {where}' if where else ''}", ""]
    lines.append(
        "| model | similarity | dim | queries (judged) | documents | input L2-normalised |"
    )
    lines.append("|---|---|---:|---:|---:|---|")
    for m in result.models:
        lines.append(
            f"| {_md_escape(m.name)} | {m.similarity} | {m.dim} | {m.n_queries} "
            f"({m.n_judged_queries}) | {m.n_documents} | "
            f"{'yes' if m.norms.get('input_normalized') else 'no'} |"
        )
    lines += ["", "## Numbers", "", summary_table(result), ""]
    lines.append(
        f"Alignment (α = {s.alignment_alpha:g}) and uniformity (t = {s.uniformity_t:g}) follow "
        "Wang & Isola (2020) on L2-normalised embeddings, as do the cosines and centroids; "
        "retrieval (top-1, negatives) uses each model's own similarity. Softmax over the "
        f"top-{s.negatives_k} non-relevant candidates at τ = "
        + ", ".join(sorted({f"{m.temperature:g}" for m in result.models}))
        + f"; seed {s.seed}. Judged queries only (at least one relevant document)."
    )
    if s.exclude_same_id:
        lines.append("A retrieved document whose id equals the query id is skipped.")
    lines.append("")
    lines += ["## Figures", ""]
    for name, caption in FIGURE_CAPTIONS.items():
        if name not in result.files:
            continue
        title = FIGURE_TITLES[name]
        lines += [f"### {title}", "", caption, "", f"![{title}]({name})", ""]
    lines.append("All numbers, and the data behind every figure: [probe.json](probe.json).")
    path.write_text("\n".join(lines) + "\n")
    return path
