"""The fusion teacher: BM25 and a dense model, linear fusion of per-query min-max scores.

This is the fusion of the evaluation table (``twotower eval --fusion linear``), made into a
pair scorer. Normalisation choice, per query and per system: the maximum is the system's best
score over the whole corpus and the minimum is its ``depth``-th best score (default 100, the
depth of mining's fusion retriever; the evaluation fuses 1,000 from each system), so

    n(d) = clip((s(d) - s_depth) / (s_1 - s_depth), 0, 1)
    T(q, d) = alpha * n_bm25(d) + (1 - alpha) * n_dense(d)

For a document in both systems' top ``depth`` this is exactly the score
:func:`twotower.retrieval.fusion.linear_fusion` gives it; a document outside one system's top
``depth`` gets 0 from that system, as a document missing from a run does there. Teacher
scores therefore lie in [0, 1], and documents outside both top lists all score 0. With
``depth=None`` the minimum is taken over the whole corpus instead (no clipping, every document
keeps a distinct score, but the scale no longer matches the evaluation's fusion).

The teacher is bound to one corpus: BM25's statistics and the normalisation both depend on it,
and a document text must belong to that corpus.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import cached_property

import numpy as np

from twotower.data.beir import Corpus
from twotower.errors import ConfigError, InputError
from twotower.models.embedding_cache import encode_corpus
from twotower.models.encoder import Encoder
from twotower.retrieval.bm25 import BM25
from twotower.retrieval.fusion import check_alpha
from twotower.teachers.base import Teacher

# Fused score vectors (one float32 per document) kept per query text across calls, so that
# mining's repeated rounds over the same queries do the corpus-wide work once: ~256 MB at most.
MEMO_FLOATS = 1 << 26


def min_max_top(scores: np.ndarray, depth: int | None) -> np.ndarray:
    """Per-query min-max of ``scores`` (all documents), the minimum being the ``depth``-th best."""
    scores = np.asarray(scores, dtype=np.float64)
    top = float(scores.max())
    if depth is None or depth >= scores.shape[0]:
        low = float(scores.min())
    else:
        low = float(np.partition(scores, scores.shape[0] - depth)[scores.shape[0] - depth])
    span = top - low
    if span <= 0:
        return (scores >= top).astype(np.float64)
    return np.clip((scores - low) / span, 0.0, 1.0)


class FusionTeacher(Teacher):
    kind = "fusion"

    def __init__(
        self,
        corpus: Corpus,
        encoder: str | Encoder,
        *,
        alpha: float = 0.5,
        depth: int | None = 100,
        bm25: BM25 | None = None,
        device: str | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        # The retrievers' default (mining's, the evaluation's fusion): the same model on the
        # same corpus then shares their corpus embeddings in the cache.
        precision: str = "auto",
        use_embedding_cache: bool = True,
        show_progress: bool = True,
        use_cache: bool = True,
    ) -> None:
        check_alpha(alpha)
        if depth is not None and depth < 1:
            raise ConfigError(f"depth must be positive, got {depth}")
        if not isinstance(encoder, Encoder):
            encoder = Encoder.from_name(
                encoder,
                device=device,
                batch_size=batch_size,
                max_length=max_length,
                precision=precision,
                show_progress=show_progress,
            )
        super().__init__(
            name=f"bm25+{encoder.name}",
            batch_size=encoder.batch_size,
            show_progress=show_progress,
            use_cache=use_cache,
        )
        self.corpus = corpus
        self.encoder = encoder
        self.alpha = alpha
        self.depth = depth
        self._bm25 = bm25
        self.use_embedding_cache = use_embedding_cache
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def chunk_size(self) -> int:
        """Pairs per step: a fused list serves every pair of its query, so a chunk spans many
        queries, whose texts are then encoded in full batches rather than a few at a time."""
        return 64 * super().chunk_size

    @cached_property
    def fingerprint(self) -> str:
        bm25 = self._bm25 or BM25()  # parameters only: no need to build the index for a cache hit
        settings = (
            self.encoder.fingerprint,
            self.corpus.fingerprint,
            self.alpha,
            self.depth,
            bm25.k1,
            bm25.b,
            bm25.method,
            bm25.language,
        )
        return hashlib.sha256(repr(settings).encode()).hexdigest()[:24]

    @property
    def bm25(self) -> BM25:
        if self._bm25 is None or not self._bm25.doc_ids:
            self._bm25 = (self._bm25 or BM25()).index(self.corpus.ids, self.corpus.texts)
        return self._bm25

    @cached_property
    def document_embeddings(self) -> np.ndarray:
        embeddings, _ = encode_corpus(self.encoder, self.corpus, use_cache=self.use_embedding_cache)
        return embeddings

    @cached_property
    def _row_of_text(self) -> dict[str, int]:
        rows: dict[str, int] = {}
        for row, text in enumerate(self.corpus.texts):
            rows.setdefault(text, row)
        return rows

    def bm25_scores(self, query: str) -> np.ndarray:
        try:
            return np.asarray(self.bm25.score_documents(query), dtype=np.float64)
        except IndexError:  # a query with no indexable token (empty, or stop words only)
            return np.zeros(len(self.corpus), dtype=np.float64)

    def query_scores(self, query: str, query_embedding: np.ndarray | None = None) -> np.ndarray:
        """Fused teacher score of every corpus document for one query."""
        if query_embedding is None:
            query_embedding = self.encoder.encode_queries([query])[0]
        dense = self.document_embeddings @ query_embedding
        return self.alpha * min_max_top(self.bm25_scores(query), self.depth) + (
            1 - self.alpha
        ) * min_max_top(dense, self.depth)

    def _score_batch(self, query_texts: list[str], doc_texts: list[str]) -> np.ndarray:
        rows = []
        for text in doc_texts:
            row = self._row_of_text.get(text)
            if row is None:
                raise InputError(
                    f"the fusion teacher scores documents of its corpus only; not in "
                    f"{self.corpus.path or 'the corpus'}: {text[:60]!r}"
                )
            rows.append(row)
        positions: dict[str, list[int]] = {}
        for i, q in enumerate(query_texts):
            positions.setdefault(q, []).append(i)
        fused = {q: self._memo[q] for q in positions if q in self._memo}
        todo = [q for q in positions if q not in fused]
        if todo:
            _ = (
                self.document_embeddings
            )  # encode the corpus (with its progress bar) before the quiet part
            shown, self.encoder.show_progress = self.encoder.show_progress, False
            try:
                embeddings = self.encoder.encode_queries(todo)
            finally:
                self.encoder.show_progress = shown
            for q, embedding in zip(todo, embeddings, strict=True):
                fused[q] = self.query_scores(q, embedding).astype(np.float32)
                self._remember(q, fused[q])
        out = np.empty(len(query_texts), dtype=np.float64)
        for q, where in positions.items():
            if q in self._memo:
                self._memo.move_to_end(q)
            out[where] = fused[q][[rows[i] for i in where]]
        return out

    def _remember(self, query: str, scores: np.ndarray) -> None:
        limit = max(1, MEMO_FLOATS // max(1, scores.shape[0]))
        self._memo[query] = scores
        while len(self._memo) > limit:
            self._memo.popitem(last=False)
