"""The teacher interface: score (query, document) pairs, by ids of a collection or by texts,
batched, cached on disk."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from twotower.data.collection import Collection
from twotower.errors import ConfigError
from twotower.teachers.cache import ScoreCache, pair_key

log = logging.getLogger(__name__)


@dataclass
class ScoringStats:
    """What the last :meth:`Teacher.score_pairs` call did."""

    pairs: int = 0
    unique: int = 0
    cached: int = 0
    computed: int = 0

    @property
    def all_cached(self) -> bool:
        return self.computed == 0


class Teacher(ABC):
    """Scores (query text, document text) pairs; higher means more relevant.

    Subclasses implement :meth:`_score_batch` and :attr:`fingerprint`; this class removes
    duplicate pairs, looks pairs up in the score cache (keyed by the fingerprint and each
    pair's text digest), scores the rest in chunks with a progress bar, and stores them.
    """

    kind: str = "teacher"

    def __init__(
        self, *, name: str, batch_size: int = 32, show_progress: bool = True, use_cache: bool = True
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.name = name
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.use_cache = use_cache
        self.last_stats = ScoringStats()

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies the teacher's weights and every setting that changes a score."""

    @abstractmethod
    def _score_batch(self, query_texts: list[str], doc_texts: list[str]) -> np.ndarray:
        """Scores of aligned pairs, float, shape (len(query_texts),)."""

    @property
    def cache(self) -> ScoreCache:
        return ScoreCache(f"{self.kind}-{self.fingerprint}")

    @property
    def chunk_size(self) -> int:
        """Pairs scored (and cached) per step: the progress bar's unit of update."""
        return max(self.batch_size * 8, 256)

    def score_pairs(self, query_texts: Sequence[str], doc_texts: Sequence[str]) -> np.ndarray:
        """Teacher score of each aligned (query, document) pair, float32."""
        if len(query_texts) != len(doc_texts):
            raise ValueError(f"{len(query_texts)} query texts but {len(doc_texts)} document texts")
        n = len(query_texts)
        if n == 0:
            self.last_stats = ScoringStats()
            return np.zeros(0, dtype=np.float32)
        keys = [pair_key(q, d) for q, d in zip(query_texts, doc_texts, strict=True)]
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        unique_keys = list(first)
        scores: dict[bytes, float] = self.cache.get_many(unique_keys) if self.use_cache else {}
        missing = [first[k] for k in unique_keys if k not in scores]
        # Grouping by query lets per-query teachers (fusion) work once per query and chunk.
        missing.sort(key=lambda i: query_texts[i])
        self.last_stats = ScoringStats(
            n, len(unique_keys), len(unique_keys) - len(missing), len(missing)
        )
        step = self.chunk_size
        with tqdm(
            total=len(missing),
            desc=f"Scoring pairs ({self.kind})",
            unit="pair",
            disable=not self.show_progress or len(missing) <= step,
        ) as progress:
            for start in range(0, len(missing), step):
                rows = missing[start : start + step]
                values = np.asarray(
                    self._score_batch([query_texts[i] for i in rows], [doc_texts[i] for i in rows]),
                    dtype=np.float64,
                ).reshape(-1)
                if values.shape[0] != len(rows):
                    raise RuntimeError(
                        f"{self.kind} teacher returned {values.shape[0]} scores for {len(rows)} pairs"
                    )
                computed = [(keys[i], float(v)) for i, v in zip(rows, values.tolist(), strict=True)]
                if self.use_cache:
                    self.cache.put_many(computed)
                scores.update(computed)
                progress.update(len(rows))
        return np.fromiter((scores[k] for k in keys), dtype=np.float32, count=n)

    def score_ids(
        self, collection: Collection, query_ids: Sequence[str], doc_ids: Sequence[str]
    ) -> np.ndarray:
        """Teacher score of each aligned (query id, document id) pair of ``collection``, float32:
        the pairs a training run asks about. A teacher that keeps scores by id (a scores file)
        looks them up; the others score the pairs' texts (:meth:`score_pairs`)."""
        if len(query_ids) != len(doc_ids):
            raise ValueError(f"{len(query_ids)} query ids but {len(doc_ids)} document ids")
        corpus = collection.corpus
        return self.score_pairs(
            [collection.queries[q] for q in query_ids], [corpus.text_of(d) for d in doc_ids]
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
