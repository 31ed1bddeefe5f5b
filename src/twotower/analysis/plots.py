"""Figures of a probe run (matplotlib, Agg backend, PNG).

Fixed colours across every figure: queries are blue, documents orange, both towers pooled grey;
a relevant top-1 is green, a non-relevant one red. One panel per model, side by side (wrapping
after four), 10-14 inches wide so that the PNGs read well in a README.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from twotower.data.files import atomic_write  # noqa: E402

from .results import ModelProbe, ProbeResult  # noqa: E402

QUERY_COLOR = "#1f77b4"
DOC_COLOR = "#ff7f0e"
POOLED_COLOR = "#7f7f7f"
RELEVANT_COLOR = "#2ca02c"
NON_RELEVANT_COLOR = "#d62728"
TOWER_COLORS = {"queries": QUERY_COLOR, "documents": DOC_COLOR, "pooled": POOLED_COLOR}
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
DPI = 120
_MAX_COLS = 4


def short_name(name: str, width: int = 36) -> str:
    """Shorten long model names (paths) for titles, keeping both ends."""
    if len(name) <= width:
        return name
    keep = width - 1
    return name[: keep // 2] + "…" + name[-(keep - keep // 2) :]


def panels(n: int, *, row_height: float = 4.2, sharex: bool = False, sharey: bool = False):
    ncols = min(n, _MAX_COLS)
    nrows = math.ceil(n / ncols)
    width = min(14.0, max(7.0, 4.6 * ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width, row_height * nrows + 0.8),
        squeeze=False,
        sharex=sharex,
        sharey=sharey,
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def save_figure(fig, path: Path) -> Path:
    try:
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    return path


def plot_tsne(models: Sequence[ModelProbe], path: str | Path) -> Path:
    """Per model: t-SNE of queries (blue) and documents (orange); faint lines join positives."""
    models = [m for m in models if m.tsne is not None]
    if not models:
        raise ValueError("no model has a t-SNE result")
    fig, axes = panels(len(models), row_height=4.6)
    for ax, m in zip(axes, models, strict=True):
        t = m.tsne
        assert t is not None  # models without one were left out above
        qc, dc = t.query_coords, t.doc_coords
        if len(t.pairs):
            segs = np.stack([qc[t.pairs[:, 0]], dc[t.pairs[:, 1]]], axis=1)
            ax.add_collection(
                LineCollection(list(segs), colors="#555555", linewidths=0.6, alpha=0.25, zorder=1)
            )
        ax.scatter(dc[:, 0], dc[:, 1], s=11, c=DOC_COLOR, alpha=0.75, lw=0, zorder=2)
        ax.scatter(qc[:, 0], qc[:, 1], s=11, c=QUERY_COLOR, alpha=0.75, lw=0, zorder=3)
        ax.set_title(f"{short_name(m.name)}\n{len(qc)} queries, {len(dc)} documents", fontsize=10)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.autoscale_view()
    handles = [
        Line2D([], [], ls="", marker="o", color=QUERY_COLOR, label="queries"),
        Line2D([], [], ls="", marker="o", color=DOC_COLOR, label="documents"),
        Line2D([], [], color="#555555", alpha=0.5, label="positive pair"),
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.02)
    )
    fig.suptitle("t-SNE of query and document embeddings (fitted jointly per model)", fontsize=12)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save_figure(fig, Path(path))


def plot_top1_similarity(models: Sequence[ModelProbe], path: str | Path) -> Path:
    """Per model: histogram of each query's top-1 similarity, relevant vs non-relevant top-1."""
    # one x scale for all panels when the models score alike (all cosine, or all dot)
    shared = len({m.similarity for m in models}) == 1
    fig, axes = panels(len(models), sharex=shared)
    for ax, m in zip(axes, models, strict=True):
        t = m.top1
        bins = _bins(np.concatenate([x.top1.scores for x in models]) if shared else t.scores)
        rel, non = t.scores[t.is_relevant], t.scores[~t.is_relevant]
        for vals, color, label in (
            (rel, RELEVANT_COLOR, f"relevant top-1 (n={rel.size})"),
            (non, NON_RELEVANT_COLOR, f"non-relevant top-1 (n={non.size})"),
        ):
            if vals.size:
                ax.hist(vals, bins=bins, color=color, alpha=0.35, label=label)
                ax.hist(vals, bins=bins, color=color, histtype="step", lw=1.4)
                ax.axvline(float(np.median(vals)), color=color, ls="--", lw=1)
            else:
                ax.plot([], [], color=color, label=label)
        auc = "n/a" if math.isnan(t.auc) else f"{t.auc:.2f}"
        ax.set_title(f"{short_name(m.name)}\nsuccess@1 {t.hit_rate:.2f}, AUC {auc}", fontsize=10)
        ax.set_xlabel(f"top-1 similarity ({m.similarity})")
        ax.set_ylabel("queries")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, loc="upper left")
        ax.tick_params(labelbottom=True)
    fig.suptitle(
        "Similarity of each query to its top-1 retrieved document (dashed: medians)", fontsize=12
    )
    fig.tight_layout()
    return save_figure(fig, Path(path))


def _bins(values: np.ndarray, n: int = 30) -> np.ndarray:
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.05, hi + 0.05
    return np.linspace(lo, hi, n + 1)


def plot_negative_sampling(models: Sequence[ModelProbe], path: str | Path) -> Path:
    """Per model: distribution of the normalised entropy of the softmax over top-k negatives."""
    bins = np.linspace(0.0, 1.0, 26)
    fig, axes = panels(len(models), sharex=True, sharey=True)
    for ax, m in zip(axes, models, strict=True):
        parts = [(m.negatives, QUERY_COLOR, "query → documents")]
        if m.dual_negatives is not None:
            parts.append((m.dual_negatives, DOC_COLOR, "document → queries (dual)"))
        meds = []
        for ns, color, label in parts:
            e = ns.entropy[np.isfinite(ns.entropy)]
            if e.size == 0:
                continue
            w = np.full(e.size, 1.0 / e.size)
            med = float(np.median(e))
            meds.append(f"{med:.2f}")
            lab = f"{label} (n={e.size}, median {med:.2f})"
            ax.hist(e, bins=bins, weights=w, color=color, alpha=0.3, label=lab)
            ax.hist(e, bins=bins, weights=w, color=color, histtype="step", lw=1.4)
            ax.axvline(med, color=color, ls="--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_title(
            f"{short_name(m.name)}\nτ = {m.temperature:g}, top-{m.negatives.k} negatives",
            fontsize=10,
        )
        ax.set_xlabel("normalised entropy of softmax (1 = uniform)")
        ax.set_ylabel("fraction of anchors")
        ax.legend(fontsize=8, loc="best")
        ax.tick_params(labelbottom=True, labelleft=True)
    fig.suptitle(
        "DANCE's view: how evenly the softmax spreads over each anchor's hardest negatives",
        fontsize=12,
    )
    fig.tight_layout()
    return save_figure(fig, Path(path))


def plot_alignment_uniformity(
    models: Sequence[ModelProbe], path: str | Path, *, t: float = 2.0, alpha: float = 2.0
) -> Path:
    """The Wang & Isola plane: uniformity (x) vs alignment (y), one marker per model."""
    fig, ax = plt.subplots(figsize=(11.0, 6.0))
    xs, ys = [], []
    for i, m in enumerate(models):
        marker = MODEL_MARKERS[i % len(MODEL_MARKERS)]
        pts = [(m.uniformity[k], m.alignment, k) for k in ("queries", "documents", "pooled")]
        pts = [p for p in pts if math.isfinite(p[0])]
        if len(pts) > 1:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#bbbbbb", lw=0.8, zorder=1)
        for x, y, tower in pts:
            ax.scatter(
                x,
                y,
                marker=marker,
                s=90,
                c=TOWER_COLORS[tower],
                edgecolors="black",
                linewidths=0.6,
                zorder=3,
            )
            xs.append(x)
            ys.append(y)
        anchor = next((p for p in pts if p[2] == "pooled"), pts[0] if pts else None)
        if anchor is not None:
            ax.annotate(
                short_name(m.name, 30),
                (anchor[0], anchor[1]),
                xytext=(8, 10 if i % 2 == 0 else -16),
                textcoords="offset points",
                fontsize=9,
            )
    if xs:
        dx = max(max(xs) - min(xs), 0.2)
        dy = max(max(ys) - min(ys), 0.1)
        ax.set_xlim(min(xs) - 0.15 * dx, max(xs) + 0.3 * dx)
        ax.set_ylim(min(ys) - 0.25 * dy, max(ys) + 0.25 * dy)
    ax.set_xlabel(f"uniformity  log E exp(−{t:g}‖x−y‖²)  (lower = more uniform)")
    a = "²" if alpha == 2 else f"^{alpha:g}"
    ax.set_ylabel(f"alignment  E‖q − d⁺‖{a}  (lower = positives closer)")
    ax.set_title("Alignment vs uniformity (Wang & Isola 2020); lower-left is better", fontsize=12)
    ax.grid(alpha=0.3)
    handles = [
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            markerfacecolor=c,
            markeredgecolor="black",
            markersize=9,
            label=f"uniformity of {'both towers pooled' if k == 'pooled' else k}",
        )
        for k, c in TOWER_COLORS.items()
    ]
    handles += [
        Line2D(
            [],
            [],
            ls="",
            marker=MODEL_MARKERS[i % len(MODEL_MARKERS)],
            color="black",
            markerfacecolor="white",
            markersize=9,
            label=short_name(m.name, 30),
        )
        for i, m in enumerate(models)
    ]
    ax.legend(
        handles=handles, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False
    )
    fig.tight_layout()
    return save_figure(fig, Path(path))


def plot_anisotropy(models: Sequence[ModelProbe], path: str | Path) -> Path:
    """Bars: mean pairwise cosine per tower per model; centroid distance per model."""
    n = len(models)
    labels = [short_name(m.name, 24) for m in models]
    width = min(14.0, max(10.0, 2.2 * n + 6))
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(width, 4.6), gridspec_kw={"width_ratios": [1.4, 1]}
    )
    x = np.arange(n)
    w = 0.38
    q = [m.anisotropy.query_mean_cosine for m in models]
    d = [m.anisotropy.document_mean_cosine for m in models]
    b1 = ax1.bar(x - w / 2, q, w, color=QUERY_COLOR, label="queries")
    b2 = ax1.bar(x + w / 2, d, w, color=DOC_COLOR, label="documents")
    ax1.bar_label(b1, fmt="%.3f", fontsize=8, padding=2)
    ax1.bar_label(b2, fmt="%.3f", fontsize=8, padding=2)
    ax1.axhline(0, color="black", lw=0.6)
    top = max([*q, *d, 0.0])
    bottom = min([*q, *d, 0.0])
    ax1.set_ylim(min(bottom * 1.2, -0.05), max(top * 1.2, 0.1))
    ax1.set_xticks(x, labels, rotation=15 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax1.set_ylabel("mean pairwise cosine (i ≠ j)")
    ax1.set_title("Anisotropy within each tower (0 = isotropic, 1 = collapsed)", fontsize=11)
    ax1.legend(fontsize=9)
    gap = [m.anisotropy.centroid.distance for m in models]
    b3 = ax2.bar(x, gap, 0.55, color=POOLED_COLOR)
    ax2.bar_label(
        b3,
        labels=[
            f"{g:.2f}\ncos {m.anisotropy.centroid.cosine:.2f}"
            if math.isfinite(m.anisotropy.centroid.cosine)
            else f"{g:.2f}"
            for g, m in zip(gap, models, strict=True)
        ],
        fontsize=8,
        padding=2,
    )
    ax2.set_ylim(0, max(max(gap) * 1.35, 0.1))
    ax2.set_xticks(x, labels, rotation=15 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax2.set_ylabel("‖μ_queries − μ_documents‖")
    ax2.set_title("Gap between the query and document centroids", fontsize=11)
    fig.suptitle("Anisotropy and tower gap (L2-normalised embeddings)", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, Path(path))


def write_figures(result: ProbeResult, out: Path) -> dict[str, Path]:
    """Draw every figure of ``result`` into the directory ``out``; file name -> path."""
    models = result.models
    files: dict[str, Path] = {}
    if any(m.tsne is not None for m in models):
        files["tsne.png"] = plot_tsne(models, out / "tsne.png")
    files["top1_similarity.png"] = plot_top1_similarity(models, out / "top1_similarity.png")
    files["negative_sampling.png"] = plot_negative_sampling(models, out / "negative_sampling.png")
    files["alignment_uniformity.png"] = plot_alignment_uniformity(
        models,
        out / "alignment_uniformity.png",
        t=result.settings.uniformity_t,
        alpha=result.settings.alignment_alpha,
    )
    files["anisotropy.png"] = plot_anisotropy(models, out / "anisotropy.png")
    return files
