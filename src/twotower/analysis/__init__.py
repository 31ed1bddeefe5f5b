"""Embedding-space probes of two-tower retrievers (docs/methods.md §13).

Give :func:`run_probe` one :class:`TowerEmbeddings` per model (the query and document
embeddings of one split) and the split's qrels; it computes alignment / uniformity
(Wang & Isola 2020), anisotropy (Ethayarajh 2019) and the centroid gap, the top-1 retrieved
similarity split by relevance and a t-SNE (SamToNe, Moiseev et al. 2023), the softmax over the
hardest negatives (DANCE, Li et al. 2021), writes
``tsne.png``, ``top1_similarity.png``, ``negative_sampling.png``, ``alignment_uniformity.png``,
``anisotropy.png``, ``probe.md`` and ``probe.json``, and returns the numbers.
"""

from .embeddings import Qrels, TowerEmbeddings
from .geometry import (
    Anisotropy,
    CentroidGap,
    alignment,
    anisotropy,
    centroid_gap,
    mean_pairwise_cosine,
    uniformity,
)
from .neighbours import (
    NegativeSoftmax,
    Retrieved,
    Summary,
    Top1Similarity,
    negative_softmax,
    negatives_from_retrieved,
    retrieve_topk,
    softmax_entropy,
    summarize,
    top1_similarity,
)
from .probe import probe_model, run_probe
from .results import FIGURES, ModelProbe, ProbeResult, ProbeSettings
from .tsne import TsneResult, TsneSample, fit_tsne, select_tsne_sample

__all__ = [
    "FIGURES",
    "Anisotropy",
    "CentroidGap",
    "ModelProbe",
    "NegativeSoftmax",
    "ProbeResult",
    "ProbeSettings",
    "Qrels",
    "Retrieved",
    "Summary",
    "Top1Similarity",
    "TowerEmbeddings",
    "TsneResult",
    "TsneSample",
    "alignment",
    "anisotropy",
    "centroid_gap",
    "fit_tsne",
    "mean_pairwise_cosine",
    "negative_softmax",
    "negatives_from_retrieved",
    "probe_model",
    "retrieve_topk",
    "run_probe",
    "select_tsne_sample",
    "softmax_entropy",
    "summarize",
    "top1_similarity",
    "uniformity",
]
