"""t-SNE of a sample of queries and documents, fitted jointly per model (SamToNe's probe).

The sample is chosen by ids, once, so that every model's panel shows the same points: up to
``n_queries`` judged queries (seeded draw), all their relevant documents, and ``n_random_docs``
further documents drawn at random. Each model's normalised query and document rows of that
sample are stacked and embedded together with scikit-learn's ``TSNE`` (PCA init, fixed seed),
so distances between the towers in the picture reflect distances in the model's space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from twotower.errors import InputError

from .embeddings import TowerEmbeddings


@dataclass
class TsneSample:
    """Ids of the points to embed and the positive (query id, document id) pairs among them."""

    query_ids: list[str]
    doc_ids: list[str]
    pairs: list[tuple[str, str]]


def select_tsne_sample(
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    relevant: Mapping[str, set[str]],
    *,
    n_queries: int = 300,
    n_random_docs: int = 300,
    max_positives_per_query: int = 5,
    seed: int = 0,
) -> TsneSample:
    """Seeded sample: judged queries, their positives (at most a few each), random documents."""
    rng = np.random.default_rng(seed)
    doc_set = set(doc_ids)
    judged = [q for q in query_ids if any(d in doc_set for d in relevant.get(q, ()))]
    if len(judged) > n_queries:
        pick = np.sort(rng.choice(len(judged), size=n_queries, replace=False))
        judged = [judged[i] for i in pick]
    chosen_docs: list[str] = []
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    for q in judged:
        pos = sorted(d for d in relevant.get(q, ()) if d in doc_set)[:max_positives_per_query]
        for d in pos:
            pairs.append((q, d))
            if d not in seen:
                seen.add(d)
                chosen_docs.append(d)
    rest = [d for d in doc_ids if d not in seen]
    if rest and n_random_docs > 0:
        take = min(n_random_docs, len(rest))
        pick = np.sort(rng.choice(len(rest), size=take, replace=False))
        chosen_docs.extend(rest[i] for i in pick)
    if not judged and not chosen_docs:
        raise InputError("t-SNE sample is empty: no judged queries and no documents")
    return TsneSample(query_ids=judged, doc_ids=chosen_docs, pairs=pairs)


@dataclass
class TsneResult:
    """2-D coordinates of one model's sample.

    ``coords[:n_queries]`` are the queries (ids ``query_ids``), the rest the documents
    (``doc_ids``); ``pairs`` are (query position, document position) indices into
    ``query_ids`` / ``doc_ids`` of positive pairs.
    """

    query_ids: list[str]
    doc_ids: list[str]
    coords: np.ndarray
    pairs: np.ndarray
    perplexity: float
    kl_divergence: float

    @property
    def query_coords(self) -> np.ndarray:
        return self.coords[: len(self.query_ids)]

    @property
    def doc_coords(self) -> np.ndarray:
        return self.coords[len(self.query_ids) :]


def fit_tsne(
    model: TowerEmbeddings,
    sample: TsneSample,
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    max_iter: int = 1000,
) -> TsneResult:
    """Joint 2-D t-SNE of the sample's queries and documents for one model.

    Runs single-threaded (a few seconds for ~1,000 points). Ids of the sample that this model
    lacks are skipped. Perplexity is capped at
    (n_points - 1) / 3 for small samples (scikit-learn needs perplexity < n_points).
    """
    # deferred on purpose: scikit-learn loads only when a t-SNE is fitted
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    qpos = {q: i for i, q in enumerate(model.query_ids)}
    dpos = {d: i for i, d in enumerate(model.doc_ids)}
    qids = [q for q in sample.query_ids if q in qpos]
    dids = [d for d in sample.doc_ids if d in dpos]
    x = np.concatenate(
        [
            model.normalized_queries()[[qpos[q] for q in qids]],
            model.normalized_documents()[[dpos[d] for d in dids]],
        ]
    ).astype(np.float32)
    n = x.shape[0]
    if n < 4:
        raise InputError(f"{model.name}: t-SNE needs at least 4 points, the sample has {n}")
    perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    tsne = TSNE(
        n_components=2,
        perplexity=perp,
        init="pca",
        learning_rate="auto",
        max_iter=max(250, max_iter),
        random_state=seed,
        metric="euclidean",
    )
    # One OpenMP thread: Barnes-Hut on a few hundred points gains nothing from threads, and on a
    # busy machine oversubscribed OpenMP threads make it 100x slower; it is also reproducible.
    with threadpool_limits(limits=1, user_api="openmp"):
        coords = tsne.fit_transform(x)
    qi = {q: i for i, q in enumerate(qids)}
    di = {d: i for i, d in enumerate(dids)}
    pairs = np.array(
        [(qi[q], di[d]) for q, d in sample.pairs if q in qi and d in di], dtype=np.int64
    ).reshape(-1, 2)
    return TsneResult(
        query_ids=qids,
        doc_ids=dids,
        coords=np.asarray(coords, dtype=np.float64),
        pairs=pairs,
        perplexity=perp,
        kl_divergence=float(tsne.kl_divergence_),
    )
