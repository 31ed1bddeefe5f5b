"""Training rows whose negatives are drawn when a row is read, as in Tevatron's ``TrainDataset``.

Each row holds one (query, positive) example. Its hard negatives and DANCE negative queries are
drawn from the current negatives tables when the row is read, so an ANCE-style refresher can
publish new tables between batches (:meth:`TrainingRows.publish`) without rebuilding the
dataset. A draw depends only on the seed, the row's id and the tables' generation: every
reader of a row (the collator, another process) sees the same negatives until a new generation
is published. A row's id is its (query, positive) and which occurrence of that pair it is, not
its position, so rows dropped after the teacher scored them (the weak-query filter) leave every
other row's negatives as scored.

The trainer's data loader reads a batch ahead, so it only collects row numbers
(:data:`ROW_COLUMN`); the trainer draws and collates the batch when the step that trains on it
begins, after any round adopted before that step. The duplicate-free batch sampler reads the
rows as first mined (``drawn(..., mined=True)``): which rows share a batch does not depend on
when a round came in, so a run resumed mid-epoch forms the interrupted run's batches.

A row read for sentence-transformers' trainer has the columns

    anchor, positive, negative_1..K, negative_query_1..M, [label], twotower_ids

(``anchor, label, twotower_ids`` for a frozen document index, whose label holds corpus rows).
``twotower_ids`` carries integer ids of every text in the row and the query's known positives;
:class:`twotower.training.collate.RowsCollator` turns them into tensors beside the teacher scores, so the losses can mask
false negatives by id (a known positive of q_i appearing as another row's positive or negative).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twotower.data.collection import Collection
from twotower.errors import ConfigError
from twotower.negatives.queries import NEGATIVE_QUERIES_PER_DOCUMENT
from twotower.negatives.table import NegativesTable, rng_for
from twotower.training.collate import IDS_COLUMN
from twotower.training.examples import NEGATIVE_QUERY_COLUMN, Example, positive_key, query_key
from twotower.training.teacher_rows import PairScores, teacher_pairs

# Candidates mined per hard negative a row draws, so each example of a query draws its own.
POOL_FACTOR = 4
# Anchor id -> ranked candidate ids: a NegativesTable or a plain mapping.
Candidates = Mapping[str, Sequence[str]] | NegativesTable


def documents_to_mine(count: int, *, frozen: bool) -> int:
    """Candidates to mine per query for rows that draw ``count`` (a frozen index takes its
    ``count`` whole, in rank order)."""
    return count if frozen else POOL_FACTOR * count


def queries_to_mine(count: int) -> int:
    """Negative queries to mine per document for rows that draw ``count``."""
    return max(NEGATIVE_QUERIES_PER_DOCUMENT, count) if count else 0


# A row's id: (query key, positive key, occurrence of that pair among the examples).
RowId = tuple[str, str, int]


def row_ids(examples: Iterable[Example]) -> list[RowId]:
    """The id of each example's row, in order; a repeated (query, positive) pair counts up."""
    seen: dict[tuple[str, str], int] = {}
    ids = []
    for example in examples:
        pair = (query_key(example), positive_key(example))
        ids.append((*pair, seen.get(pair, 0)))
        seen[pair] = seen.get(pair, 0) + 1
    return ids


def draw(rng: np.random.Generator, candidates: Sequence[str], count: int) -> list[str]:
    """``count`` of ``candidates`` without repeats, or with repeats when there are too few (every
    row keeps the same number of columns)."""
    if len(candidates) >= count:
        return [candidates[i] for i in rng.choice(len(candidates), size=count, replace=False)]
    return [candidates[i] for i in rng.integers(0, len(candidates), size=count)]


def _plain(table: Candidates) -> dict[str, Sequence[str]]:
    """A negatives table (or any mapping of anchor -> candidates) as a plain dict."""
    return dict(table.negatives if isinstance(table, NegativesTable) else table)


def _as_dict(table: Candidates | None) -> dict[str, Sequence[str]] | None:
    return None if table is None else _plain(table)


def _non_empty(table: Candidates) -> dict[str, Sequence[str]]:
    """The anchors of a new table that have candidates: one without any keeps its old ones (a
    row must always be drawable)."""
    return {anchor: found for anchor, found in _plain(table).items() if found}


class _Interner:
    """Stable small integers for ids (or texts): the same key always gets the same integer."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        return self._ids.setdefault(key, len(self._ids))


@dataclass
class DrawnRow:
    """The texts of one row with their keys (ids, or the texts themselves without ids)."""

    example: Example
    negative_keys: list[str]
    negatives: list[str]
    negative_query_keys: list[str]
    negative_queries: list[str]


class TrainingRows:
    """The training rows of a run: examples plus replaceable negatives tables.

    Args:
        examples: the (query, positive) examples; a triples file's examples carry their own
            negatives (texts), used when there is no ``documents`` table.
        collection: where ids are looked up (texts, positives); None for a pairs file.
        negatives: K, hard negatives per row.
        negative_queries: M, negative queries per row (DANCE).
        seed: seed of the draws.
        documents: query id -> ranked candidate document ids (mined or from a file).
        queries: document id -> ranked candidate query ids (DANCE's negative queries).
        pool: take the first K candidates in table order instead of a random draw (a frozen
            document index can afford a whole mined pool).
    """

    def __init__(
        self,
        examples: Sequence[Example],
        collection: Collection | None,
        *,
        negatives: int,
        negative_queries: int = 0,
        seed: int = 0,
        documents: Candidates | None = None,
        queries: Candidates | None = None,
        pool: bool = False,
    ) -> None:
        if negatives < 0 or negative_queries < 0:
            raise ConfigError("negatives and negative_queries must be >= 0")
        self.collection = collection
        self.num_negatives = negatives
        self.num_negative_queries = negative_queries
        self.seed = seed
        self.pool = pool
        self.teacher_scores: PairScores | None = None
        self._lock = threading.Lock()
        self._documents = _as_dict(documents)
        self._queries = _as_dict(queries)
        # The tables as first mined: publish replaces the dicts, never edits them.
        self._mined = (self._documents, self._queries)
        self.generation = 0
        self._document_ids = _Interner()
        self._query_ids = _Interner()
        # Without a collection, a query's known positives are the positives of all its rows.
        self._file_positives: dict[str, set[str]] = {}
        if collection is None:
            for e in examples:
                self._file_positives.setdefault(query_key(e), set()).add(positive_key(e))
        # Rows that cannot be drawn (no candidate negative, or negative query) are left out.
        self.dropped = {"negatives": 0, "negative_queries": 0}
        self.examples: list[Example] = []
        self.row_ids: list[RowId] = []  # beside examples: what a row's draws are seeded by
        for example, row_id in zip(examples, row_ids(examples), strict=True):
            missing = self._missing(example)
            if missing:
                self.dropped[missing] += 1
            else:
                self.examples.append(example)
                self.row_ids.append(row_id)

    # --- which rows can be drawn -----------------------------------------------------------

    def _document_candidates(
        self, example: Example, documents: Mapping[str, Sequence[str]] | None
    ) -> list[str]:
        if documents is None or example.query_id is None:  # ids are never None
            return []
        positives = self._positives(example)
        return [d for d in documents.get(example.query_id, []) if d not in positives]

    def _query_candidates(
        self, example: Example, queries: Mapping[str, Sequence[str]] | None
    ) -> list[str]:
        doc = example.positive_id
        if queries is None or doc is None or self.collection is None:
            return []
        return [
            q
            for q in queries.get(doc, [])
            if q != example.query_id and doc not in self.collection.positives(q)
        ]

    def _missing(self, example: Example) -> str | None:
        """What a row of ``example`` would lack: "negatives", "negative_queries" or None."""
        if self.num_negatives:
            if self._documents is None:
                if len(example.negatives) < self.num_negatives:
                    return "negatives"
            elif not self._document_candidates(example, self._documents):
                return "negatives"
        if self.num_negative_queries and not self._query_candidates(example, self._queries):
            return "negative_queries"
        return None

    def _positives(self, example: Example) -> set[str]:
        if self.collection is not None and example.query_id is not None:
            return self.collection.positives(example.query_id)
        return self._file_positives.get(query_key(example), {positive_key(example)})

    # --- publishing -----------------------------------------------------------------------

    def publish(
        self,
        documents: Candidates | None = None,
        queries: Candidates | None = None,
        teacher_scores: PairScores | None = None,
    ) -> int:
        """Replace the rows of the queries (documents) in ``documents`` (``queries``) from the
        next read on; anchors left out, or given no candidate, keep their previous candidates
        (ANCE refreshes a part of the queries at a time). Returns the new generation."""
        with self._lock:
            if documents is not None:
                if self._documents is None:
                    raise ConfigError("these rows draw no negatives from a table")
                self._documents = {**self._documents, **_non_empty(documents)}
            if queries is not None:
                if self._queries is None:
                    raise ConfigError("these rows draw no negative queries")
                self._queries = {**self._queries, **_non_empty(queries)}
            if teacher_scores is not None:
                self.teacher_scores = {**(self.teacher_scores or {}), **teacher_scores}
            self.generation += 1
            return self.generation

    # --- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.examples)

    def drawn(self, index: int, *, mined: bool = False) -> DrawnRow:
        """The negatives of row ``index`` under the current generation (``mined``: under the
        tables as first mined, generation 0, whatever was published since)."""
        example = self.examples[index]
        row_id = self.row_ids[index]
        k, m = self.num_negatives, self.num_negative_queries
        with self._lock:
            documents, queries = self._mined if mined else (self._documents, self._queries)
            generation = 0 if mined else self.generation
            if not k:
                keys: list[str] = []
            elif documents is None:  # a triples file: its own negatives, in file order
                keys = list(example.negatives[:k])
            elif self.pool:
                keys = self._document_candidates(example, documents)[:k]
            else:
                rng = rng_for(self.seed, *row_id, "documents", generation)
                keys = draw(rng, self._document_candidates(example, documents), k)
            query_keys: list[str] = []
            if m:
                rng = rng_for(self.seed, *row_id, "queries", generation)
                query_keys = draw(rng, self._query_candidates(example, queries), m)
        texts = keys if documents is None else [self._document_text(d) for d in keys]
        query_texts: list[str] = []
        if query_keys:
            assert self.collection is not None  # negative queries are drawn from the collection
            query_texts = [self.collection.queries[q] for q in query_keys]
        return DrawnRow(example, keys, texts, query_keys, query_texts)

    def _document_text(self, doc_id: str) -> str:
        assert self.collection is not None
        return self.collection.corpus.text_of(doc_id)

    def teacher_row(self, row: DrawnRow) -> list[float]:
        """[T(q, d+), T(q, d-_1..K), T(q-_1..M, d+)] of a drawn row."""
        if self.teacher_scores is None:
            raise ConfigError("the loss needs teacher scores, but none were given for these rows")
        scores = self.teacher_scores
        try:
            return [scores[(k, d)] for k, d, _, _ in teacher_pairs([row])]
        except KeyError as missing:
            raise ConfigError(
                f"no teacher score for the training pair {missing.args[0]} (generation"
                f" {self.generation}): a published round must bring the scores of its negatives"
            ) from None

    def keep_queries(self, keep: set[str]) -> int:
        """Keep only the rows of these query keys; returns how many rows were dropped."""
        before = len(self.examples)
        kept = [i for i, e in enumerate(self.examples) if query_key(e) in keep]
        self.examples = [self.examples[i] for i in kept]
        self.row_ids = [self.row_ids[i] for i in kept]
        return before - len(self.examples)

    def ids(self, row: DrawnRow) -> dict[str, Any]:
        """Integer ids of a row's texts and of its query's known positives."""
        e = row.example
        doc, query = self._document_ids, self._query_ids
        known = sorted(self._positives(e) | {positive_key(e)})
        return {
            "query_ids": query(query_key(e)),
            "positive_ids": doc(positive_key(e)),
            "hard_negative_ids": [doc(d) for d in row.negative_keys],
            "negative_query_ids": [query(q) for q in row.negative_query_keys],
            "query_positive_ids": [doc(d) for d in known],
        }

    # --- the views the trainer reads ------------------------------------------------------

    def columns(self) -> list[str]:
        """Text columns in sentence-transformers' order (anchor first)."""
        names = ["anchor", "positive"]
        names += [f"negative_{i + 1}" for i in range(self.num_negatives)]
        names += [f"{NEGATIVE_QUERY_COLUMN}{j + 1}" for j in range(self.num_negative_queries)]
        return names

    def read(self, index: int, *, with_teacher: bool, mined: bool = False) -> dict[str, Any]:
        """Row ``index`` as the trainer reads it (texts, label, ids); ``mined``: see
        :meth:`drawn`."""
        row = self.drawn(index, mined=mined)
        e = row.example
        values: dict[str, Any] = {"anchor": e.query, "positive": e.positive}
        for i, text in enumerate(row.negatives):
            values[f"negative_{i + 1}"] = text
        for j, text in enumerate(row.negative_queries):
            values[f"{NEGATIVE_QUERY_COLUMN}{j + 1}"] = text
        if with_teacher:
            values["label"] = self.teacher_row(row)
        values[IDS_COLUMN] = self.ids(row)
        return values
