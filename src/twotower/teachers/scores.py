"""Teacher scores of a collection's pairs, and their JSONL file.

File format (``twotower teach --output``), one pair per line::

    {"query_id": "q1", "doc_id": "d7", "score": 0.83}

with ``"raw_score"`` too when the scores were normalised. Rows of a query are contiguous in
the writer's output but the reader does not require it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from twotower.data.collection import Collection
from twotower.data.jsonl import iter_jsonl, require_string, write_jsonl
from twotower.errors import InputError
from twotower.teachers.base import Teacher
from twotower.teachers.normalize import TeacherScores

Pairs = dict[str, list[str]]  # query id → document ids to score


def score_collection_pairs(
    teacher: Teacher, collection: Collection, pairs: Mapping[str, Iterable[str]]
) -> TeacherScores:
    """Teacher score of each (query id, document id) pair, texts taken from ``collection``."""
    query_ids: list[str] = []
    doc_ids: list[str] = []
    for qid, docs in pairs.items():
        if qid not in collection.queries:
            raise InputError(
                f"unknown query id '{qid}' (not in {collection.path / 'queries.jsonl'})"
            )
        for doc_id in dict.fromkeys(docs):
            if doc_id not in collection.corpus.index:
                raise InputError(
                    f"unknown document id '{doc_id}' (query '{qid}'; not in the corpus)"
                )
            query_ids.append(qid)
            doc_ids.append(doc_id)
    values = teacher.score_pairs(
        [collection.queries[q] for q in query_ids], [collection.corpus.text_of(d) for d in doc_ids]
    )
    out: TeacherScores = {qid: {} for qid in pairs}
    for qid, doc_id, value in zip(query_ids, doc_ids, values.tolist(), strict=True):
        out[qid][doc_id] = float(value)
    return out


def write_scores(
    path: str | Path,
    scores: Mapping[str, Mapping[str, float]],
    raw: Mapping[str, Mapping[str, float]] | None = None,
) -> int:
    def rows():
        for qid, per_query in scores.items():
            for doc_id, value in per_query.items():
                row = {"query_id": qid, "doc_id": doc_id, "score": float(value)}
                if raw is not None:
                    row["raw_score"] = float(raw[qid][doc_id])
                yield row

    return write_jsonl(path, rows())


def read_scores(path: str | Path, collection: Collection | None = None) -> TeacherScores:
    """Read a teacher-score file; with ``collection``, unknown query or document ids are errors."""
    path = Path(path)
    out: TeacherScores = {}
    lines: dict[tuple[str, str], int] = {}
    for line, obj in iter_jsonl(path):
        qid = require_string(obj, "query_id", path, line)
        doc_id = require_string(obj, "doc_id", path, line)
        if "score" not in obj:
            raise InputError("missing required field", path=path, line=line, field="score")
        value = obj["score"]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise InputError(
                f"expected a finite number, got {value!r}", path=path, line=line, field="score"
            )
        if collection is not None:
            if qid not in collection.queries:
                raise InputError(
                    f"unknown query id '{qid}'", path=path, line=line, field="query_id"
                )
            if doc_id not in collection.corpus.index:
                raise InputError(
                    f"unknown document id '{doc_id}'", path=path, line=line, field="doc_id"
                )
        if (qid, doc_id) in lines:
            raise InputError(
                f"pair ({qid}, {doc_id}) scored twice (first on line {lines[qid, doc_id]})",
                path=path,
                line=line,
            )
        lines[qid, doc_id] = line
        out.setdefault(qid, {})[doc_id] = float(value)
    return out
