"""Training examples: (query, positive, hard negatives, negative queries, teacher scores) rows.

Negatives come from a negatives table (query id → ranked candidate doc ids) that is a plain
mapping, so a refresher (ANCE) can later hand the data pipeline a new one between epochs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from twotower.data.collection import Collection
from twotower.data.jsonl import iter_jsonl, require_string
from twotower.errors import InputError

NEGATIVE_QUERY_COLUMN = "negative_query_"


@dataclass
class Example:
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    query_id: str | None = None
    positive_id: str | None = None
    negative_ids: list[str] = field(default_factory=list)
    # DANCE: negative queries for the positive document (METHODS §2).
    negative_queries: list[str] = field(default_factory=list)
    negative_query_ids: list[str] = field(default_factory=list)
    # [T(q, d+), T(q, d-_1..K), T(q-_1..M, d+)]
    teacher: list[float] | None = None


def examples_from_collection(
    collection: Collection, max_examples: int | None = None
) -> list[Example]:
    """One example per (judged query, positive document) pair, in qrels order."""
    examples = []
    for query_id in collection.judged_query_ids:
        for doc_id, grade in collection.qrels[query_id].items():
            if grade > 0 and doc_id in collection.corpus.index:
                examples.append(
                    Example(
                        collection.queries[query_id],
                        collection.corpus.text_of(doc_id),
                        query_id=query_id,
                        positive_id=doc_id,
                    )
                )
    if not examples:
        raise InputError(
            f"split '{collection.split}' has no (query, positive document) pair",
            path=collection.path,
        )
    return examples[:max_examples] if max_examples else examples


def examples_from_jsonl(path: str | Path, max_examples: int | None = None) -> list[Example]:
    """Pairs or triples as texts: ``{"query": ..., "positive": ..., "negatives": [...]}``."""
    path = Path(path)
    examples = []
    for line, obj in iter_jsonl(path):
        negatives = obj.get("negatives", [])
        if isinstance(negatives, str):
            negatives = [negatives]
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise InputError("expected a list of strings", path=path, line=line, field="negatives")
        query = require_string(obj, "query", path, line)
        positive = require_string(obj, "positive", path, line)
        for name, text in (("query", query), ("positive", positive)):
            if not text.strip():
                raise InputError("empty text", path=path, line=line, field=name)
        examples.append(Example(query, positive, list(negatives), query_id=obj.get("query_id")))
        if max_examples and len(examples) >= max_examples:
            break
    if not examples:
        raise InputError("no training examples", path=path)
    return examples


def draw(rng: random.Random, candidates: Sequence[str], count: int) -> list[str]:
    """``count`` of ``candidates`` without repeats, or with repeats when there are too few (every
    row keeps the same number of columns)."""
    if len(candidates) >= count:
        return rng.sample(list(candidates), count)
    return [rng.choice(candidates) for _ in range(count)]


def attach_negatives(
    examples: Sequence[Example],
    table: Mapping[str, Sequence[str]],
    collection: Collection,
    count: int,
    seed: int,
) -> int:
    """Give each example ``count`` negatives sampled from its query's row of ``table``.

    Never a positive of the query; examples whose query has too few candidates repeat
    candidates (so every row has the same number of columns). Returns how many examples had
    no candidate at all (they keep no negatives and are dropped by :func:`to_columns`).
    """
    rng = random.Random(seed)
    missing = 0
    for example in examples:
        positives = collection.positives(example.query_id) if example.query_id else set()
        candidates = [d for d in table.get(example.query_id, []) if d not in positives]
        if not candidates:
            missing += 1
            example.negative_ids, example.negatives = [], []
            continue
        picked = draw(rng, candidates, count)
        example.negative_ids = picked
        example.negatives = [collection.corpus.text_of(d) for d in picked]
    return missing


def attach_negative_pool(
    examples: Sequence[Example],
    table: Mapping[str, Sequence[str]],
    collection: Collection,
    count: int,
) -> int:
    """Give each example up to ``count`` negatives of its query's row, in table order (no
    resampling: a frozen index can afford them all). Returns how many got none."""
    missing = 0
    for example in examples:
        positives = collection.positives(example.query_id) if example.query_id else set()
        picked = [d for d in table.get(example.query_id, []) if d not in positives][:count]
        example.negative_ids = picked
        example.negatives = []  # texts are not needed: documents are looked up by row
        missing += not picked
    return missing


def attach_negative_queries(
    examples: Sequence[Example],
    table: Mapping[str, Sequence[str]],
    collection: Collection,
    count: int,
    seed: int,
) -> int:
    """Give each example ``count`` negative queries sampled from its positive document's row of
    ``table`` (document id → mined negative query ids), deterministically for a ``seed``.

    Never the example's own query nor a query that has the document as a positive; a row with
    too few candidates repeats them. Returns how many examples had no candidate (they keep none
    and are dropped by :func:`to_columns`).
    """
    rng = random.Random(seed)
    missing = 0
    for example in examples:
        doc = example.positive_id
        candidates = (
            [
                q
                for q in table.get(doc, [])
                if q != example.query_id and doc not in collection.positives(q)
            ]
            if doc is not None
            else []
        )
        if not candidates:
            missing += 1
            example.negative_query_ids, example.negative_queries = [], []
            continue
        picked = draw(rng, candidates, count)
        example.negative_query_ids = picked
        example.negative_queries = [collection.queries[q] for q in picked]
    return missing


def attach_teacher_scores(
    examples: Sequence[Example], score_pairs: Callable[[list[str], list[str]], Sequence[float]]
) -> None:
    """Teacher scores for each example, batched in one call:
    [T(q, d+), T(q, d-_1..K), T(q-_1..M, d+)] (the negative queries against the positive)."""
    queries, documents = [], []
    for example in examples:
        for doc in [example.positive, *example.negatives]:
            queries.append(example.query)
            documents.append(doc)
        for negative_query in example.negative_queries:
            queries.append(negative_query)
            documents.append(example.positive)
    scores = list(map(float, score_pairs(queries, documents)))
    position = 0
    for example in examples:
        width = 1 + len(example.negatives) + len(example.negative_queries)
        example.teacher = scores[position : position + width]
        position += width


def to_columns(
    examples: Sequence[Example], negatives: int, with_teacher: bool, negative_queries: int = 0
) -> dict[str, list]:
    """Columns in sentence-transformers' order: anchor, positive, negative_1..K,
    negative_query_1..M, [label = T(q, d+), T(q, d-_1..K), T(q-_1..M, d+)].

    Examples with fewer than K negatives or M negative queries are left out.
    """
    rows = [
        e
        for e in examples
        if len(e.negatives) >= negatives and len(e.negative_queries) >= negative_queries
    ]
    columns: dict[str, list] = {
        "anchor": [e.query for e in rows],
        "positive": [e.positive for e in rows],
    }
    for k in range(negatives):
        columns[f"negative_{k + 1}"] = [e.negatives[k] for e in rows]
    for m in range(negative_queries):
        columns[f"{NEGATIVE_QUERY_COLUMN}{m + 1}"] = [e.negative_queries[m] for e in rows]
    if with_teacher:
        labels = []
        for e in rows:
            teacher = list(e.teacher)  # type: ignore[arg-type]
            start = 1 + len(e.negatives)  # negative-query scores follow all of the row's negatives
            labels.append(teacher[: 1 + negatives] + teacher[start : start + negative_queries])
        columns["label"] = labels
    return columns


def is_query_column(name: str) -> bool:
    """Whether a column of :func:`to_columns` holds queries (anchor, negative_query_*)."""
    return name == "anchor" or name.startswith(NEGATIVE_QUERY_COLUMN)
