"""The negatives JSONL file: writing, and reading with file:line:field errors.

Hard negative documents (``twotower mine``), one training query per line::

    {"query_id": "q1", "positive_ids": ["d1"], "negative_ids": ["d7", "d3"], "negative_ranks": [12, 40]}

Hard negative queries (``twotower mine --negatives queries``), one positive document per line::

    {"doc_id": "d1", "positive_ids": ["q1"], "negative_ids": ["q8", "q2"], "negative_ranks": [3, 17]}

``negative_ranks`` (1-based ranks in the mining retriever's ranking) is optional; when present
it has one entry per negative. A negative may not also be a positive of its row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twotower.data.collection import Collection
from twotower.data.jsonl import iter_jsonl, require_string, write_jsonl
from twotower.errors import InputError
from twotower.negatives.table import ANCHOR_FIELD, Kind, NegativesTable


def write_negatives(path: str | Path, table: NegativesTable) -> int:
    """Write ``table`` atomically; returns the number of rows."""
    return write_jsonl(path, table.to_rows())


def _id_list(
    obj: dict[str, Any], field: str, path: Path, line: int, *, required: bool = True
) -> list[str]:
    if field not in obj or obj[field] is None:
        if required:
            raise InputError("missing required field", path=path, line=line, field=field)
        return []
    value = obj[field]
    if not isinstance(value, list):
        raise InputError(
            f"expected a list of ids, got {type(value).__name__}", path=path, line=line, field=field
        )
    ids = []
    for position, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (str, int)) or item == "":
            raise InputError(
                f"item {position}: expected an id (string), got {item!r}",
                path=path,
                line=line,
                field=field,
            )
        ids.append(str(item))
    return ids


def _ranks(obj: dict[str, Any], count: int, path: Path, line: int) -> list[int] | None:
    value = obj.get("negative_ranks")
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError(
            f"expected a list of integers, got {type(value).__name__}",
            path=path,
            line=line,
            field="negative_ranks",
        )
    for position, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise InputError(
                f"item {position}: expected a rank >= 1, got {item!r}",
                path=path,
                line=line,
                field="negative_ranks",
            )
    if len(value) != count:
        raise InputError(
            f"{len(value)} ranks for {count} negatives",
            path=path,
            line=line,
            field="negative_ranks",
        )
    return list(value)


def read_negatives(
    path: str | Path, collection: Collection | None = None, *, kind: Kind | None = None
) -> NegativesTable:
    """Read and validate a negatives file.

    The kind is taken from the first row (``query_id`` → documents, ``doc_id`` → queries) unless
    given. With ``collection``, every id must exist in it (queries.jsonl / corpus.jsonl).
    """
    path = Path(path)
    negatives: dict[str, list[str]] = {}
    ranks: dict[str, list[int]] = {}
    positives: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        if kind is None:
            kind = "queries" if "doc_id" in obj and "query_id" not in obj else "documents"
        anchor_field = ANCHOR_FIELD[kind]
        anchor = require_string(obj, anchor_field, path, line)
        if not anchor:
            raise InputError("empty id", path=path, line=line, field=anchor_field)
        if anchor in first_line:
            raise InputError(
                f"duplicate id '{anchor}' (first on line {first_line[anchor]})",
                path=path,
                line=line,
                field=anchor_field,
            )
        first_line[anchor] = line
        pos = _id_list(obj, "positive_ids", path, line, required=False)
        neg = _id_list(obj, "negative_ids", path, line)
        rank_list = _ranks(obj, len(neg), path, line)
        clash = set(pos) & set(neg)
        if clash:
            raise InputError(
                f"'{sorted(clash)[0]}' is both a positive and a negative",
                path=path,
                line=line,
                field="negative_ids",
            )
        if collection is not None:
            _check_ids(collection, kind, anchor, pos, neg, path, line)
        negatives[anchor] = neg
        positives[anchor] = pos
        if rank_list is not None:
            ranks[anchor] = rank_list
    return NegativesTable(negatives, ranks, positives, kind or "documents", {"path": str(path)})


def _check_ids(
    collection: Collection,
    kind: str,
    anchor: str,
    pos: list[str],
    neg: list[str],
    path: Path,
    line: int,
) -> None:
    queries, docs = collection.queries, collection.corpus.index
    anchor_known, item_known = (queries, docs) if kind == "documents" else (docs, queries)
    anchor_noun, item_noun = ("query", "document") if kind == "documents" else ("document", "query")
    if anchor not in anchor_known:
        raise InputError(
            f"unknown {anchor_noun} id '{anchor}'", path=path, line=line, field=ANCHOR_FIELD[kind]
        )
    for field, ids in (("positive_ids", pos), ("negative_ids", neg)):
        unknown = [i for i in ids if i not in item_known]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise InputError(
                f"unknown {item_noun} id '{unknown[0]}'{more}", path=path, line=line, field=field
            )
