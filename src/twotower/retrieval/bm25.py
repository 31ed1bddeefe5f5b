"""BM25 with bm25s: English Snowball stemming and stop words; Anserini's k1 = 0.9, b = 0.4."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from twotower.retrieval import Run
from twotower.retrieval.dense import to_run


class BM25:
    def __init__(
        self, k1: float = 0.9, b: float = 0.4, method: str = "lucene", language: str = "english"
    ) -> None:
        self.k1, self.b, self.method, self.language = k1, b, method, language
        self._retriever: Any = None  # a bm25s.BM25 once indexed (bm25s ships no types)
        self._stemmer: Any = None
        self.doc_ids: list[str] = []

    def _tokenize(self, texts: Sequence[str]):
        import bm25s

        return bm25s.tokenize(
            list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False
        )

    def index(self, doc_ids: Sequence[str], texts: Sequence[str]) -> BM25:
        import bm25s
        import Stemmer

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets DEBUG on import
        self._stemmer = Stemmer.Stemmer(self.language)
        self.doc_ids = list(doc_ids)
        self._retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        self._retriever.index(self._tokenize(texts), show_progress=False)
        return self

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, document indices), each (len(queries), k), best first."""
        if self._retriever is None:
            raise RuntimeError("call index() first")
        k = min(k, len(self.doc_ids))
        tokens = self._tokenize(queries)
        indices, scores = self._retriever.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        return scores.astype(np.float32), indices.astype(np.int64)

    def score_documents(self, query: str) -> np.ndarray:
        """BM25 score of every document for one query (for teachers and fusion)."""
        tokens = self._tokenize([query])
        ids = tokens.ids[0] if hasattr(tokens, "ids") else tokens[0]
        vocab_inverse = {v: k for k, v in tokens.vocab.items()}
        words = [vocab_inverse[i] for i in ids if i in vocab_inverse and vocab_inverse[i]]
        if not words:  # empty query or stop words only: no document matches
            return np.zeros(len(self.doc_ids), dtype=np.float32)
        return self._retriever.get_scores(words)

    def run(
        self,
        query_ids: Sequence[str],
        queries: Sequence[str],
        k: int,
        *,
        ignore_identical_ids: bool = False,
    ) -> Run:

        scores, indices = self.search(queries, k + int(ignore_identical_ids))
        return to_run(
            query_ids, self.doc_ids, scores, indices, ignore_identical_ids=ignore_identical_ids
        )
