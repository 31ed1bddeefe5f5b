"""The files of a probe run: every figure, probe.md (table and figures) and probe.json.

:func:`write_report` is the one place a probe's output is written; the figures themselves are
drawn by :mod:`twotower.analysis.plots`.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from twotower.data.files import atomic_write

from .results import FIGURES, ProbeResult, md_escape

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


def write_report(result: ProbeResult, output_dir: str | Path) -> dict[str, Path]:
    """Draw the figures and write probe.json and probe.md into ``output_dir`` (created).

    Returns file name -> written path; the markdown links only the figures that were drawn.
    """
    # deferred on purpose: matplotlib loads only when a probe writes its figures
    from .plots import write_figures

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = write_figures(result, out)
    files["probe.json"] = write_json(result, out / "probe.json")
    files["probe.md"] = write_markdown(result, out / "probe.md", figures=files)
    return files


def write_json(result: ProbeResult, path: str | Path) -> Path:
    path = Path(path)
    text = json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n"
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def write_markdown(result: ProbeResult, path: str | Path, *, figures: Collection[str]) -> Path:
    """probe.md: what was probed, the summary table, each figure with one sentence to read it.

    ``figures`` are the figure files drawn next to it; only those are linked.
    """
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
            f"| {md_escape(m.name)} | {m.similarity} | {m.dim} | {m.n_queries} "
            f"({m.n_judged_queries}) | {m.n_documents} | "
            f"{'yes' if m.norms.get('input_normalized') else 'no'} |"
        )
    lines += ["", "## Numbers", "", result.summary_markdown(), ""]
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
    for name in FIGURES:
        if name not in figures:
            continue
        title = FIGURE_TITLES[name]
        lines += [f"### {title}", "", FIGURE_CAPTIONS[name], "", f"![{title}]({name})", ""]
    lines.append("All numbers, and the data behind every figure: [probe.json](probe.json).")
    with atomic_write(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return path
