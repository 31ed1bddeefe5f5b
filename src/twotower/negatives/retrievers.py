"""First-stage retrievers for mining: BM25, a dense model (exact search or a FAISS index), or their
fusion.

Each returns a :data:`~twotower.retrieval.Run` whose per-query dicts are ordered best first.
``run`` ranks corpus documents for queries (hard negative documents); ``run_reverse`` ranks
training queries for documents (DANCE's hard negative queries). They bind a collection and an
encoder (with its embedding cache), so they sit above data and models; the search itself is
:mod:`twotower.retrieval`'s.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence

from twotower.data.collection import Collection
from twotower.errors import ConfigError
from twotower.models.embedding_cache import encode_corpus, encode_queries
from twotower.models.encoder import Encoder
from twotower.retrieval import Run
from twotower.retrieval.ann import IndexSettings, checked_recall, search_run
from twotower.retrieval.bm25 import BM25
from twotower.retrieval.dense import exact_run
from twotower.retrieval.fusion import check_alpha, linear_fusion

# Each system's list depth before a mining fusion. Not the evaluation's FUSION_DEPTH (1,000):
# from 1,000 each the fused order moves enough that other negatives are drawn (SciFact train,
# window 10:100, 8 a query: a tenth in common), changing what every fusion-mined recipe learns.
MINING_FUSION_DEPTH = 100


class Retriever(ABC):
    name: str
    # Recall against exact search of the last run through an approximate index; None otherwise.
    last_recall: float | None = None

    @property
    def dense_encoder(self) -> Encoder | None:
        """The encoder whose corpus embeddings the retriever searches; None for BM25."""
        return None

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies everything that changes the ranking (model weights, parameters)."""

    @abstractmethod
    def run(
        self,
        collection: Collection,
        query_ids: Sequence[str],
        depth: int,
        *,
        ignore_identical_ids: bool = False,
    ) -> Run:
        """Top ``depth`` corpus documents for each query, best first."""

    @abstractmethod
    def run_reverse(
        self, collection: Collection, doc_ids: Sequence[str], query_ids: Sequence[str], depth: int
    ) -> Run:
        """Top ``depth`` of ``query_ids`` for each document of ``doc_ids`` (keys: document ids)."""


class BM25Retriever(Retriever):
    """BM25 (bm25s, Anserini's k1 = 0.9, b = 0.4). Documents scoring 0 (no query term) are not
    retrieved, so a window never fills with arbitrary zero-score documents."""

    name = "bm25"

    def __init__(self, k1: float = 0.9, b: float = 0.4) -> None:
        self.k1, self.b = k1, b

    @property
    def fingerprint(self) -> str:
        return f"bm25-k1={self.k1}-b={self.b}-lucene-english"

    def _search(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        anchors: Sequence[str],
        anchor_texts: Sequence[str],
        depth: int,
        ignore_identical_ids: bool = False,
    ) -> Run:
        bm25 = BM25(self.k1, self.b).index(ids, texts)
        run = bm25.run(anchors, anchor_texts, depth, ignore_identical_ids=ignore_identical_ids)
        return {a: {d: s for d, s in ranked.items() if s > 0} for a, ranked in run.items()}

    def run(self, collection, query_ids, depth, *, ignore_identical_ids=False):
        corpus = collection.corpus
        texts = [collection.queries[q] for q in query_ids]
        return self._search(corpus.ids, corpus.texts, query_ids, texts, depth, ignore_identical_ids)

    def run_reverse(self, collection, doc_ids, query_ids, depth):
        texts = [collection.corpus.text_of(d) for d in doc_ids]
        return self._search(
            query_ids, [collection.queries[q] for q in query_ids], doc_ids, texts, depth
        )


class DenseRetriever(Retriever):
    """Inner-product search with any :class:`Encoder`, exact or through the FAISS index of
    ``index`` (documents ranked by queries; the reverse direction, over a split's queries, is
    always exact); corpus embeddings come from (and go to) the embedding cache that evaluation
    uses. After an approximate search, ``last_recall`` holds its recall against exact search."""

    def __init__(
        self, encoder: Encoder, *, use_cache: bool = True, index: IndexSettings = IndexSettings()
    ) -> None:
        self.encoder = encoder
        self.name = str(encoder.name)
        self.use_cache = use_cache
        self.index = index

    @property
    def dense_encoder(self) -> Encoder:
        return self.encoder

    @property
    def fingerprint(self) -> str:
        # An approximate index finds other candidates: its tables are cached apart.
        suffix = f"-{self.index.describe()}" if self.index.approximate else ""
        return f"dense-{self.encoder.fingerprint}{suffix}"

    def run(self, collection, query_ids, depth, *, ignore_identical_ids=False):
        documents, _ = encode_corpus(self.encoder, collection.corpus, use_cache=self.use_cache)
        queries, _ = encode_queries(
            self.encoder, [collection.queries[q] for q in query_ids], use_cache=self.use_cache
        )
        found = (query_ids, queries, collection.corpus.ids, documents, depth)
        run = search_run(*found, self.index, ignore_identical_ids=ignore_identical_ids)
        self.last_recall = checked_recall(
            run,
            *found,
            self.index,
            f"mining with {self.name}",
            ignore_identical_ids=ignore_identical_ids,
        )
        return run

    def run_reverse(self, collection, doc_ids, query_ids, depth):
        documents, _ = encode_corpus(self.encoder, collection.corpus, use_cache=self.use_cache)
        rows = [collection.corpus.index[d] for d in doc_ids]
        queries, _ = encode_queries(
            self.encoder, [collection.queries[q] for q in query_ids], use_cache=self.use_cache
        )
        return exact_run(doc_ids, documents[rows], query_ids, queries, depth)


class FusionRetriever(Retriever):
    """BM25 and a dense model fused linearly (per-query min-max, ``alpha`` on BM25), as
    ``twotower eval --fusion linear`` does, from each system's top ``max(depth, 100)``."""

    def __init__(
        self,
        encoder: Encoder,
        *,
        alpha: float = 0.5,
        use_cache: bool = True,
        bm25: BM25Retriever | None = None,
        index: IndexSettings = IndexSettings(),
    ) -> None:
        check_alpha(alpha)
        self.bm25 = bm25 or BM25Retriever()
        self.dense = DenseRetriever(encoder, use_cache=use_cache, index=index)
        self.alpha = alpha
        self.name = f"bm25+{encoder.name}"

    @property
    def dense_encoder(self) -> Encoder:
        return self.dense.encoder

    @property
    def fingerprint(self) -> str:
        settings = (self.bm25.fingerprint, self.dense.fingerprint, self.alpha, MINING_FUSION_DEPTH)
        return "fusion-" + hashlib.sha256(repr(settings).encode()).hexdigest()[:24]

    def run(self, collection, query_ids, depth, *, ignore_identical_ids=False):
        inner = max(depth, MINING_FUSION_DEPTH)
        first = self.bm25.run(
            collection, query_ids, inner, ignore_identical_ids=ignore_identical_ids
        )
        second = self.dense.run(
            collection, query_ids, inner, ignore_identical_ids=ignore_identical_ids
        )
        self.last_recall = self.dense.last_recall
        return linear_fusion(first, second, self.alpha, k=depth)

    def run_reverse(self, collection, doc_ids, query_ids, depth):
        inner = max(depth, MINING_FUSION_DEPTH)
        first = self.bm25.run_reverse(collection, doc_ids, query_ids, inner)
        second = self.dense.run_reverse(collection, doc_ids, query_ids, inner)
        return linear_fusion(first, second, self.alpha, k=depth)


def build_retriever(
    kind: str,
    model: str | Encoder | None = None,
    *,
    alpha: float = 0.5,
    use_cache: bool = True,
    device: str | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
    precision: str = "auto",
    index: IndexSettings = IndexSettings(),
) -> Retriever:
    """``bm25``, ``dense`` (needs ``model``) or ``fusion`` (BM25 + ``model``); ``index``: how the
    dense side searches."""
    kind = kind.lower()
    if kind == "bm25":
        if model is not None:
            raise ConfigError("--retriever bm25 takes no --model (use dense or fusion)")
        if index.type != "exact":
            raise ConfigError("--index searches dense embeddings; --retriever bm25 has none")
        return BM25Retriever()
    if kind not in ("dense", "fusion"):
        raise ConfigError(f"unknown retriever '{kind}' (bm25, dense or fusion)")
    if model is None:
        raise ConfigError(f"--retriever {kind} needs --model NAME|PATH")
    encoder = (
        model
        if isinstance(model, Encoder)
        else Encoder.from_name(
            model, device=device, batch_size=batch_size, max_length=max_length, precision=precision
        )
    )
    if kind == "dense":
        return DenseRetriever(encoder, use_cache=use_cache, index=index)
    return FusionRetriever(encoder, alpha=alpha, use_cache=use_cache, index=index)


def parse_retriever_spec(spec: str) -> tuple[str, str | None]:
    """``bm25`` | ``dense:MODEL`` | ``fusion:MODEL`` (BM25 + MODEL, linear) → (kind, model)."""
    kind, _, model = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in ("bm25", "dense", "fusion") or (kind != "bm25") != bool(model.strip()):
        raise ConfigError(f"retriever '{spec}': expected bm25, dense:MODEL or fusion:MODEL")
    return kind, model.strip() or None
