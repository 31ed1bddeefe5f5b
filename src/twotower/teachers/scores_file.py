"""A teacher whose scores come from a file: ``twotower teach`` output, or scores published with
a data set (e.g. the cross-encoder ensemble scores released for Margin-MSE on MS MARCO).

The file holds ``{"query_id", "doc_id", "score"}`` rows (:mod:`twotower.teachers.scores`). A
training run asks by ids (:meth:`ScoresFileTeacher.score_ids`), looked up as they are; asked by
texts, the collection maps them back to those ids. A pair the file does not score is an error
naming the ids, never a silent zero.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from twotower.data.collection import Collection
from twotower.errors import InputError
from twotower.teachers.base import ScoringStats, Teacher
from twotower.teachers.cache import pair_key
from twotower.teachers.scores import read_scores

log = logging.getLogger(__name__)


class ScoresFileTeacher(Teacher):
    kind = "scores_file"

    def __init__(
        self, path: str | Path, collection: Collection, *, show_progress: bool = False
    ) -> None:
        super().__init__(
            name=str(path), show_progress=show_progress, use_cache=False
        )  # the file is the cache
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("teacher scores file not found", path=self.path)
        scores = read_scores(self.path, collection)
        self._by_id = scores
        self._collection = collection  # maps a missing pair's texts back to ids, for the error
        self._scores: dict[bytes, float] = {}
        conflicts = 0
        for qid, per_query in scores.items():
            query = collection.queries[qid]
            for doc_id, value in per_query.items():
                key = pair_key(query, collection.corpus.text_of(doc_id))
                if key in self._scores and self._scores[key] != value:
                    conflicts += 1  # two ids with the same texts, scored differently
                    continue
                self._scores[key] = value
        if conflicts:
            log.warning(
                "%s: %d pairs repeat another pair's texts with a different score; the first is used",
                self.path,
                conflicts,
            )
        self._fingerprint = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        return f"file-{self._fingerprint}"

    def score_ids(self, collection, query_ids, doc_ids) -> np.ndarray:
        if len(query_ids) != len(doc_ids):
            raise ValueError(f"{len(query_ids)} query ids but {len(doc_ids)} document ids")
        values = np.empty(len(query_ids), dtype=np.float32)
        missing = []
        for i, (qid, doc_id) in enumerate(zip(query_ids, doc_ids, strict=True)):
            value = self._by_id.get(qid, {}).get(doc_id)
            if value is None:
                missing.append((qid, doc_id))
            else:
                values[i] = value
        if missing:
            raise self._missing(*missing[0], len(missing))
        self.last_stats = ScoringStats(len(values), len(values), len(values), 0)
        return values

    def _missing(self, qid: str, doc_id: str, count: int) -> InputError:
        more = f" (and {count - 1} more pairs)" if count > 1 else ""
        return InputError(
            f"no teacher score for query '{qid}' and document '{doc_id}'{more}; score the training"
            " pairs with `twotower teach --pairs NEGATIVES.jsonl` (negative queries included) or"
            " pick another teacher",
            path=self.path,
        )

    def __len__(self) -> int:
        return len(self._scores)

    def score_pairs(self, query_texts, doc_texts) -> np.ndarray:
        # One lookup over every pair (no chunks, no cache), so an error counts all missing pairs.
        if len(query_texts) != len(doc_texts):
            raise ValueError(f"{len(query_texts)} query texts but {len(doc_texts)} document texts")
        values = self._score_batch(list(query_texts), list(doc_texts)).astype(np.float32)
        self.last_stats = ScoringStats(len(values), len(values), len(values), 0)
        return values

    def _score_batch(self, query_texts: list[str], doc_texts: list[str]) -> np.ndarray:
        values = np.empty(len(query_texts), dtype=np.float64)
        missing = []
        for i, (query, doc) in enumerate(zip(query_texts, doc_texts, strict=True)):
            value = self._scores.get(pair_key(query, doc))
            if value is None:
                missing.append(i)
            else:
                values[i] = value
        if missing:
            first = missing[0]
            qid = next(
                (q for q, text in self._collection.queries.items() if text == query_texts[first]),
                repr(query_texts[first][:60]),
            )
            corpus = self._collection.corpus
            doc_id = next(
                (
                    d
                    for d, text in zip(corpus.ids, corpus.texts, strict=True)
                    if text == doc_texts[first]
                ),
                repr(doc_texts[first][:60]),
            )
            raise self._missing(qid, doc_id, len(missing))
        return values
