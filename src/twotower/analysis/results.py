"""What a probe run returns: its settings, each model's numbers, and their plain forms.

:class:`ProbeResult` converts itself to plain data: :meth:`ProbeResult.to_dict` is the content of
probe.json (every number behind every figure) and :meth:`ProbeResult.summary_markdown` the
headline table that the training report and the CLI print. Drawing and writing files is
:mod:`twotower.analysis.report`'s job.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twotower.errors import ConfigError

from .geometry import Anisotropy
from .neighbours import NegativeSoftmax, Top1Similarity
from .tsne import TsneResult

FIGURES = (
    "tsne.png",
    "top1_similarity.png",
    "negative_sampling.png",
    "alignment_uniformity.png",
    "anisotropy.png",
)
"""The figure files of a probe run; also the keys of probe.json's ``figures`` section."""

SCHEMA_VERSION = 1


@dataclass
class ProbeSettings:
    """Every knob of a probe run (recorded in probe.json)."""

    seed: int = 0
    temperature: float = 0.05
    negatives_k: int = 20
    dual: bool = True
    max_dual_anchors: int = 5000
    uniformity_t: float = 2.0
    alignment_alpha: float = 2.0
    max_pairs: int = 1_000_000
    exclude_same_id: bool = False
    tsne: bool = True
    tsne_queries: int = 300
    tsne_random_docs: int = 300
    tsne_perplexity: float = 30.0
    tsne_max_iter: int = 1000

    def validate(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.negatives_k < 2:
            raise ConfigError(f"negatives_k must be ≥ 2, got {self.negatives_k}")
        if self.max_pairs < 1:
            raise ConfigError(f"max_pairs must be ≥ 1, got {self.max_pairs}")
        if self.tsne_queries < 0 or self.tsne_random_docs < 0:
            raise ConfigError("t-SNE sample sizes must be ≥ 0")
        if self.max_dual_anchors < 1:
            raise ConfigError(f"max_dual_anchors must be ≥ 1, got {self.max_dual_anchors}")


@dataclass
class ModelProbe:
    """All the numbers of one model.

    ``uniformity`` has keys ``queries``, ``documents``, ``pooled`` (both towers together).
    ``negatives`` is the query→document softmax over top negatives; ``dual_negatives`` the
    document→query one (``None`` when disabled or no document has a judged query).
    """

    name: str
    similarity: str
    temperature: float
    dim: int
    n_queries: int
    n_documents: int
    n_judged_queries: int
    n_positive_pairs: int
    norms: dict
    alignment: float
    uniformity: dict[str, float]
    anisotropy: Anisotropy
    top1: Top1Similarity
    negatives: NegativeSoftmax
    dual_negatives: NegativeSoftmax | None = None
    tsne: TsneResult | None = None

    def summary(self) -> dict[str, float]:
        """Headline numbers, in table order (NaN where not computed)."""
        nan = float("nan")
        dual = self.dual_negatives
        return {
            "alignment": self.alignment,
            "uniformity_queries": self.uniformity["queries"],
            "uniformity_documents": self.uniformity["documents"],
            "uniformity_pooled": self.uniformity["pooled"],
            "anisotropy_queries": self.anisotropy.query_mean_cosine,
            "anisotropy_documents": self.anisotropy.document_mean_cosine,
            "centroid_distance": self.anisotropy.centroid.distance,
            "centroid_cosine": self.anisotropy.centroid.cosine,
            "top1_hit_rate": self.top1.hit_rate,
            "top1_relevant_mean": self.top1.relevant.mean,
            "top1_non_relevant_mean": self.top1.non_relevant.mean,
            "top1_auc": self.top1.auc,
            "neg_entropy_median": self.negatives.entropy_summary.median,
            "neg_max_prob_median": self.negatives.max_prob_summary.median,
            "dual_neg_entropy_median": dual.entropy_summary.median if dual else nan,
            "dual_neg_max_prob_median": dual.max_prob_summary.median if dual else nan,
        }


SUMMARY_LABELS = {
    "alignment": "alignment E‖q−d⁺‖² (↓)",
    "uniformity_queries": "uniformity, queries (↓)",
    "uniformity_documents": "uniformity, documents (↓)",
    "uniformity_pooled": "uniformity, pooled (↓)",
    "anisotropy_queries": "mean pairwise cos, queries",
    "anisotropy_documents": "mean pairwise cos, documents",
    "centroid_distance": "centroid distance ‖μ_q−μ_d‖",
    "centroid_cosine": "centroid cosine cos(μ_q, μ_d)",
    "top1_hit_rate": "top-1 relevant (success@1)",
    "top1_relevant_mean": "mean top-1 sim, relevant top-1",
    "top1_non_relevant_mean": "mean top-1 sim, non-relevant top-1",
    "top1_auc": "AUC of top-1 sim (hit vs miss)",
    "neg_entropy_median": "median norm. entropy over negatives, q→d",
    "neg_max_prob_median": "median max prob over negatives, q→d",
    "dual_neg_entropy_median": "median norm. entropy over negatives, d→q",
    "dual_neg_max_prob_median": "median max prob over negatives, d→q",
}
"""Row labels of the headline table, keyed like :meth:`ModelProbe.summary`."""


@dataclass
class ProbeResult:
    """What :func:`twotower.analysis.run_probe` computed and wrote.

    ``files`` maps ``"tsne.png"`` … ``"anisotropy.png"``, ``"probe.md"`` and ``"probe.json"`` to
    the written paths (a figure is absent when it was skipped, e.g. t-SNE disabled).
    """

    models: list[ModelProbe]
    settings: ProbeSettings
    output_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    split: str | None = None
    data: str | None = None

    def model(self, name: str) -> ModelProbe:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def summary(self) -> dict[str, dict[str, float]]:
        """model name -> headline numbers (see :meth:`ModelProbe.summary`)."""
        return {m.name: m.summary() for m in self.models}

    def summary_markdown(self, models: Sequence[str] | None = None) -> str:
        """A markdown table, one row per headline measure, one column per model."""
        chosen = [self.model(n) for n in models] if models is not None else self.models
        sums = [m.summary() for m in chosen]
        header = "| measure | " + " | ".join(md_escape(m.name) for m in chosen) + " |"
        lines = [header, "|---|" + "---:|" * len(chosen)]
        for key, label in SUMMARY_LABELS.items():
            vals = [s[key] for s in sums]
            if all(not math.isfinite(v) for v in vals) and key.startswith("dual_"):
                continue  # the dual view was not run
            lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in vals) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Everything, JSON-serialisable: the content of probe.json.

        Row indices refer to the rows of each model's input arrays.
        """
        return _jsonable(
            {
                "schema_version": SCHEMA_VERSION,
                "data": self.data,
                "split": self.split,
                "settings": self.settings,
                "models": {m.name: _model_numbers(m) for m in self.models},
                "figures": _figure_data(self.models),
            }
        )


def md_escape(s: str) -> str:
    """``s`` safe inside a markdown table cell."""
    return s.replace("|", "\\|")


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.3f}"


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


def _negatives_numbers(ns: NegativeSoftmax | None) -> dict | None:
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


def _figure_data(models: Sequence[ModelProbe]) -> dict:
    """The points behind each figure, keyed by figure file (see :data:`FIGURES`)."""
    figs: dict[str, dict] = {}
    tsne = {}
    for m in models:
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
        for m in models
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
        for m in models
    }
    figs["alignment_uniformity.png"] = {
        m.name: {"alignment": m.alignment, "uniformity": m.uniformity} for m in models
    }
    figs["anisotropy.png"] = {
        m.name: {
            "query_mean_cosine": m.anisotropy.query_mean_cosine,
            "document_mean_cosine": m.anisotropy.document_mean_cosine,
            "centroid_distance": m.anisotropy.centroid.distance,
            "centroid_cosine": m.anisotropy.centroid.cosine,
        }
        for m in models
    }
    return figs
