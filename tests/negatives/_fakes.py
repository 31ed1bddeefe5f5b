"""A retriever with a fixed ranking and a teacher with fixed scores, for exact expectations."""

from __future__ import annotations

import numpy as np

from twotower.negatives.retrievers import Retriever
from twotower.teachers.base import Teacher


class FixedRetriever(Retriever):
    name = "fixed"

    def __init__(
        self, ranking: dict[str, list[str]], reverse: dict[str, list[str]] | None = None
    ) -> None:
        self.ranking, self.reverse = ranking, reverse or {}
        self.calls = 0

    @property
    def fingerprint(self) -> str:
        return "fixed-" + str(sorted(self.ranking.items())) + str(sorted(self.reverse.items()))

    def run(self, collection, query_ids, depth, *, ignore_identical_ids=False):
        self.calls += 1
        return {q: {d: -float(r) for r, d in enumerate(self.ranking[q][:depth])} for q in query_ids}

    def run_reverse(self, collection, doc_ids, query_ids, depth):
        self.calls += 1
        return {d: {q: -float(r) for r, q in enumerate(self.reverse[d][:depth])} for d in doc_ids}


class TableTeacher(Teacher):
    """Scores by document text through a dict; counts the pairs it really scores."""

    kind = "table"

    def __init__(self, by_doc_text: dict[str, float], **kwargs) -> None:
        super().__init__(name="table", show_progress=False, **kwargs)
        self.by_doc_text = by_doc_text
        self.scored = 0

    @property
    def fingerprint(self) -> str:
        return "t" + str(abs(hash(tuple(sorted(self.by_doc_text.items())))))

    def _score_batch(self, query_texts, doc_texts):
        self.scored += len(doc_texts)
        return np.array([self.by_doc_text[d] for d in doc_texts])
