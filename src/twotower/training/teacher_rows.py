"""The teacher scores training rows need: which (query, document) pairs a drawn row asks for
(T(q, d+), T(q, d-_1..K), T(q-_1..M, d+)) and scoring them in one batched call."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from twotower.training.examples import positive_key, query_key

if TYPE_CHECKING:
    from twotower.data.collection import Collection
    from twotower.teachers.base import Teacher
    from twotower.training.rows import DrawnRow

# The teacher's score of a (query, document) pair, keyed by their ids (or texts without ids).
PairScores = dict[tuple[str, str], float]


def teacher_pairs(rows: Iterable[DrawnRow]) -> list[tuple[str, str, str, str]]:
    """(query key, document key, query text, document text) of every teacher score that
    ``rows`` need: T(q, d+), T(q, d-_1..K), T(q-_1..M, d+)."""
    pairs = []
    for row in rows:
        e = row.example
        qk, pk = query_key(e), positive_key(e)
        pairs.append((qk, pk, e.query, e.positive))
        pairs += [
            (qk, dk, e.query, d) for dk, d in zip(row.negative_keys, row.negatives, strict=True)
        ]
        pairs += [
            (nk, pk, nq, e.positive)
            for nk, nq in zip(row.negative_query_keys, row.negative_queries, strict=True)
        ]
    return pairs


def teacher_scores_for(
    teacher: Teacher, drawn: Sequence[DrawnRow], collection: Collection | None
) -> PairScores:
    """Score, in one batched call, every pair the ``drawn`` rows need (each distinct pair once):
    by ids where the rows come from ``collection`` (its queries, synthetic ones included, and
    its corpus), by texts for rows of a pairs file."""
    pairs = {(qk, dk): (q, d) for qk, dk, q, d in teacher_pairs(drawn)}
    keys = list(pairs)
    if collection is not None and all(
        qk in collection.queries and dk in collection.corpus.index for qk, dk in keys
    ):
        scores = teacher.score_ids(collection, [k[0] for k in keys], [k[1] for k in keys])
    else:
        scores = teacher.score_pairs([pairs[k][0] for k in keys], [pairs[k][1] for k in keys])
    return dict(zip(keys, map(float, scores), strict=True))
