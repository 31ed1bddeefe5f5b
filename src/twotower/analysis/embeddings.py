"""The input of the probes: one model's query and document embeddings, plus shared qrels.

The encoding is done elsewhere (the CLI encodes a split with each model); everything in
``twotower.analysis`` takes these arrays and never touches a model.

Normalisation: embeddings may or may not be L2-normalised. Every cosine-based measure
(alignment, uniformity, anisotropy, centroids, t-SNE) L2-normalises them first; retrieval
(top-1 similarity, the softmax over negatives) uses the model's own similarity,
``TowerEmbeddings.similarity``: ``"cos"`` (normalise, then dot) or ``"dot"`` (raw inner product).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from twotower.errors import InputError
from twotower.retrieval.dense import l2_normalize

Qrels = Mapping[str, Mapping[str, int]]
"""query id -> document id -> graded relevance; relevant means > 0."""

SIMILARITIES = ("cos", "dot")
_NORM_TOL = 1e-3


@dataclass
class TowerEmbeddings:
    """One model's embeddings of one split.

    Attributes:
        name: label used in figures, tables and JSON keys; unique within a probe run.
        query_ids: ids of the rows of ``queries`` (unique).
        queries: (Nq, D) float array, the query tower's output.
        doc_ids: ids of the rows of ``documents`` (unique).
        documents: (Nd, D) float array, the document tower's output.
        similarity: the model's scoring function, ``"cos"`` or ``"dot"``; used for retrieval
            (top-1 similarity, softmax over negatives). Cosine-based measures always normalise.
        temperature: softmax temperature for the DANCE negative view; ``None`` takes the
            default of :func:`twotower.analysis.run_probe` (0.05, i.e. scale 20).
    """

    name: str
    query_ids: Sequence[str]
    queries: np.ndarray
    doc_ids: Sequence[str]
    documents: np.ndarray
    similarity: str = "cos"
    temperature: float | None = None
    _norm_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError("model name must be a non-empty string", field="name")
        self.query_ids = [str(i) for i in self.query_ids]
        self.doc_ids = [str(i) for i in self.doc_ids]
        self.queries = _as_matrix(self.queries, f"{self.name}: queries")
        self.documents = _as_matrix(self.documents, f"{self.name}: documents")
        if self.queries.shape[1] != self.documents.shape[1]:
            raise InputError(
                f"{self.name}: queries have dimension {self.queries.shape[1]} but documents "
                f"have {self.documents.shape[1]}",
                field="documents",
            )
        for ids, arr, what in (
            (self.query_ids, self.queries, "query_ids"),
            (self.doc_ids, self.documents, "doc_ids"),
        ):
            if len(ids) != arr.shape[0]:
                raise InputError(
                    f"{self.name}: {len(ids)} {what} for {arr.shape[0]} embedding rows", field=what
                )
            if len(set(ids)) != len(ids):
                raise InputError(f"{self.name}: duplicate ids in {what}", field=what)
        if self.similarity not in SIMILARITIES:
            raise InputError(
                f"{self.name}: similarity must be one of {SIMILARITIES}, got {self.similarity!r}",
                field="similarity",
            )
        if self.temperature is not None and not (self.temperature > 0):
            raise InputError(
                f"{self.name}: temperature must be > 0, got {self.temperature}",
                field="temperature",
            )

    @property
    def dim(self) -> int:
        return int(self.queries.shape[1])

    def normalized_queries(self) -> np.ndarray:
        """L2-normalised queries (float32, cached)."""
        if "q" not in self._norm_cache:
            self._norm_cache["q"] = l2_normalize(self.queries)
        return self._norm_cache["q"]

    def normalized_documents(self) -> np.ndarray:
        """L2-normalised documents (float32, cached)."""
        if "d" not in self._norm_cache:
            self._norm_cache["d"] = l2_normalize(self.documents)
        return self._norm_cache["d"]

    def retrieval_queries(self) -> np.ndarray:
        """Queries as the model scores them (normalised for ``cos``, raw for ``dot``)."""
        return self.normalized_queries() if self.similarity == "cos" else self.queries

    def retrieval_documents(self) -> np.ndarray:
        """Documents as the model scores them (normalised for ``cos``, raw for ``dot``)."""
        return self.normalized_documents() if self.similarity == "cos" else self.documents

    def norm_stats(self) -> dict[str, float | bool]:
        """Mean L2 norm of each tower and whether the input was already unit-norm."""
        qn = np.linalg.norm(self.queries.astype(np.float64), axis=1)
        dn = np.linalg.norm(self.documents.astype(np.float64), axis=1)
        return {
            "query_norm_mean": float(qn.mean()),
            "document_norm_mean": float(dn.mean()),
            "input_normalized": bool(
                np.all(np.abs(qn - 1) < _NORM_TOL) and np.all(np.abs(dn - 1) < _NORM_TOL)
            ),
        }


def _as_matrix(x: object, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InputError(f"{what} must be a 2-D array (rows, dim), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{what} is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinite values")
    return arr


def relevant_docs(qrels: Qrels) -> dict[str, set[str]]:
    """query id -> ids of the documents with relevance > 0 (queries with none are dropped)."""
    out: dict[str, set[str]] = {}
    for qid, docs in qrels.items():
        rel = {str(did) for did, grade in docs.items() if grade > 0}
        if rel:
            out[str(qid)] = rel
    return out


def positive_index(
    anchor_ids: Sequence[str], candidate_ids: Sequence[str], relevant: Mapping[str, set[str]]
) -> list[np.ndarray]:
    """For each anchor, the row indices of its relevant candidates present in ``candidate_ids``.

    Relevant ids missing from ``candidate_ids`` are ignored.
    """
    index = {cid: i for i, cid in enumerate(candidate_ids)}
    out = []
    for aid in anchor_ids:
        rel = relevant.get(aid, ())
        out.append(np.array(sorted(index[c] for c in rel if c in index), dtype=np.int64))
    return out


def reverse_relevant(relevant: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Document id -> ids of the queries it is relevant to (the dual task's qrels)."""
    out: dict[str, set[str]] = {}
    for qid, docs in relevant.items():
        for did in docs:
            out.setdefault(did, set()).add(qid)
    return out
