"""The probe: compute every measure for each model (and, given a directory, write the report).

Entry point: :func:`run_probe`. The numbers come back as a
:class:`~twotower.analysis.results.ProbeResult`, so the training report can embed its
``summary_markdown()`` (e.g. base model vs trained model); :mod:`twotower.analysis.report`
writes the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from twotower.errors import ConfigError, InputError

from .embeddings import (
    Qrels,
    TowerEmbeddings,
    positive_index,
    relevant_docs,
    reverse_relevant,
)
from .geometry import alignment, anisotropy, positive_pairs, uniformity
from .neighbours import (
    NegativeSoftmax,
    negative_softmax,
    negatives_from_retrieved,
    retrieve_topk,
    top1_similarity,
)
from .report import write_report
from .results import ModelProbe, ProbeResult, ProbeSettings
from .tsne import fit_tsne, select_tsne_sample


def probe_model(
    model: TowerEmbeddings,
    qrels: Qrels,
    settings: ProbeSettings | None = None,
) -> ModelProbe:
    """Compute every measure of one model (everything but t-SNE)."""
    s = settings or ProbeSettings()
    s.validate()
    relevant = relevant_docs(qrels)
    qpos = positive_index(model.query_ids, model.doc_ids, relevant)
    judged = np.array([i for i, p in enumerate(qpos) if len(p)], dtype=np.int64)
    if judged.size == 0:
        raise InputError(
            f"{model.name}: no query has a relevant document among the {len(model.doc_ids)} "
            "documents (do the qrels match this split's query and document ids?)"
        )
    qn, dn = model.normalized_queries(), model.normalized_documents()
    judged_pos = [qpos[i] for i in judged]
    pairs = positive_pairs(judged_pos)
    pairs[:, 0] = judged[pairs[:, 0]]

    align = alignment(qn, dn, pairs, alpha=s.alignment_alpha, max_pairs=s.max_pairs, seed=s.seed)
    unif = {
        "queries": _uniformity_or_nan(qn, s),
        "documents": _uniformity_or_nan(dn, s),
        "pooled": _uniformity_or_nan(np.concatenate([qn, dn]), s),
    }
    aniso = anisotropy(qn, dn)

    doc_index = {d: i for i, d in enumerate(model.doc_ids)}
    q_self = None
    if s.exclude_same_id:
        q_self = [doc_index.get(model.query_ids[i], -1) for i in judged]
    rq, rd = model.retrieval_queries(), model.retrieval_documents()
    tau = model.temperature if model.temperature is not None else s.temperature
    # one exact search, deep enough for the top-k negatives after dropping the positives
    depth = s.negatives_k + max(len(p) for p in judged_pos)
    ret = retrieve_topk(rq[judged], rd, depth, positives=judged_pos, exclude=q_self)
    top1 = top1_similarity(ret, query_rows=judged)
    negs = negatives_from_retrieved(
        ret,
        k=s.negatives_k,
        temperature=tau,
        anchor_rows=judged,
        direction="query->document",
    )

    dual = None
    if s.dual:
        dual = _dual_negatives(model, relevant, s, tau)

    return ModelProbe(
        name=model.name,
        similarity=model.similarity,
        temperature=float(tau),
        dim=model.dim,
        n_queries=len(model.query_ids),
        n_documents=len(model.doc_ids),
        n_judged_queries=int(judged.size),
        n_positive_pairs=int(len(pairs)),
        norms=model.norm_stats(),
        alignment=align,
        uniformity=unif,
        anisotropy=aniso,
        top1=top1,
        negatives=negs,
        dual_negatives=dual,
    )


def _uniformity_or_nan(x: np.ndarray, s: ProbeSettings) -> float:
    if x.shape[0] < 2:
        return float("nan")
    return uniformity(x, t=s.uniformity_t, max_pairs=s.max_pairs, seed=s.seed)


def _dual_negatives(
    model: TowerEmbeddings, relevant: dict[str, set[str]], s: ProbeSettings, tau: float
) -> NegativeSoftmax | None:
    """Document→query: each document relevant to some query, over its top negative queries."""
    rev = reverse_relevant(relevant)
    dpos = positive_index(model.doc_ids, model.query_ids, rev)
    anchors = np.array([i for i, p in enumerate(dpos) if len(p)], dtype=np.int64)
    if anchors.size == 0 or len(model.query_ids) < 3:
        return None
    if anchors.size > s.max_dual_anchors:
        rng = np.random.default_rng(s.seed)
        anchors = np.sort(rng.choice(anchors, size=s.max_dual_anchors, replace=False))
    d_self = None
    if s.exclude_same_id:
        q_index = {q: i for i, q in enumerate(model.query_ids)}
        d_self = [q_index.get(model.doc_ids[i], -1) for i in anchors]
    rq, rd = model.retrieval_queries(), model.retrieval_documents()
    return negative_softmax(
        rd[anchors],
        rq,
        [dpos[i] for i in anchors],
        k=s.negatives_k,
        temperature=tau,
        exclude=d_self,
        anchor_rows=anchors,
        direction="document->query",
    )


def run_probe(
    models: Sequence[TowerEmbeddings],
    qrels: Qrels,
    output_dir: str | Path | None,
    *,
    seed: int = 0,
    temperature: float = 0.05,
    negatives_k: int = 20,
    dual: bool = True,
    max_dual_anchors: int = 5000,
    uniformity_t: float = 2.0,
    alignment_alpha: float = 2.0,
    max_pairs: int = 1_000_000,
    exclude_same_id: bool = False,
    tsne: bool = True,
    tsne_queries: int = 300,
    tsne_random_docs: int = 300,
    tsne_perplexity: float = 30.0,
    tsne_max_iter: int = 1000,
    data: str | None = None,
    split: str | None = None,
) -> ProbeResult:
    """Probe one or more models on the same split and write figures and report.

    Writes to ``output_dir`` (created): ``tsne.png``, ``top1_similarity.png``,
    ``negative_sampling.png``, ``alignment_uniformity.png``, ``anisotropy.png``, ``probe.md``
    and ``probe.json``. ``output_dir=None`` computes the numbers only.

    ``temperature`` is the softmax temperature of the negative view (a model's own
    ``TowerEmbeddings.temperature`` wins); ``exclude_same_id`` drops a retrieved document whose id
    equals the query id (collections whose queries are documents, e.g. ArguAna). ``data`` and
    ``split`` only label the report.
    """
    settings = ProbeSettings(
        seed=seed,
        temperature=temperature,
        negatives_k=negatives_k,
        dual=dual,
        max_dual_anchors=max_dual_anchors,
        uniformity_t=uniformity_t,
        alignment_alpha=alignment_alpha,
        max_pairs=max_pairs,
        exclude_same_id=exclude_same_id,
        tsne=tsne,
        tsne_queries=tsne_queries,
        tsne_random_docs=tsne_random_docs,
        tsne_perplexity=tsne_perplexity,
        tsne_max_iter=tsne_max_iter,
    )
    settings.validate()
    models = list(models)
    if not models:
        raise ConfigError("probe needs at least one model")
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"model names must be unique; repeated: {', '.join(dupes)}")

    probes = [probe_model(m, qrels, settings) for m in models]

    if tsne:
        relevant = relevant_docs(qrels)
        qids, dids = _shared_ids(models)
        for m, p in zip(models, probes, strict=True):
            if qids or dids:
                sample = select_tsne_sample(
                    qids,
                    dids,
                    relevant,
                    n_queries=tsne_queries,
                    n_random_docs=tsne_random_docs,
                    seed=seed,
                )
            else:  # models encode different splits: sample each on its own
                sample = select_tsne_sample(
                    m.query_ids,
                    m.doc_ids,
                    relevant,
                    n_queries=tsne_queries,
                    n_random_docs=tsne_random_docs,
                    seed=seed,
                )
            p.tsne = fit_tsne(
                m, sample, seed=seed, perplexity=tsne_perplexity, max_iter=tsne_max_iter
            )

    result = ProbeResult(models=probes, settings=settings, data=data, split=split)
    if output_dir is not None:
        result.output_dir = Path(output_dir)
        result.files = write_report(result, result.output_dir)
    return result


def _shared_ids(models: Sequence[TowerEmbeddings]) -> tuple[list[str], list[str]]:
    """Query and document ids common to all models, in the first model's order."""
    q = set(models[0].query_ids)
    d = set(models[0].doc_ids)
    for m in models[1:]:
        q &= set(m.query_ids)
        d &= set(m.doc_ids)
    return [i for i in models[0].query_ids if i in q], [i for i in models[0].doc_ids if i in d]
