"""Synthetic training queries over a collection's corpus (Tamber et al. 2025; docs/methods.md §12).

A synthetic-queries file is JSONL, one generated query per line::

    {"query": "what lowers blood pressure in mice?", "doc_id": "4983", "query_id": "g-17", "type": "question"}

``query`` and ``doc_id`` (the passage it was written for) are required; ``query_id`` defaults to
``synthetic-<line>``; ``type`` (question, claim, title, keywords, …) is optional and lets a
recipe train on some types only. The file becomes a :class:`Collection` over the corpus it was
generated from: each query has its source passage as its one positive, so mining, teachers,
negative queries and the frozen document index work on it exactly as on human-labelled qrels.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from twotower.data.collection import Collection
from twotower.data.jsonl import iter_jsonl, require_string
from twotower.errors import InputError

log = logging.getLogger(__name__)

SPLIT = "synthetic"


def load_synthetic_queries(
    path: str | Path,
    collection: Collection,
    *,
    types: Sequence[str] | None = None,
    include_split: bool = False,
) -> tuple[Collection, dict[str, int]]:
    """``collection`` with its queries and qrels replaced by (or, with ``include_split``, joined
    with) the generated queries of ``path``, and the number kept of each query type; ``types``
    keeps only those types.

    Every problem is an :class:`InputError` naming the file, line and field: malformed JSON, a
    missing or empty query, a ``doc_id`` not in the corpus, a ``query_id`` used twice (or one
    that is also a query id of the collection, when joined).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("synthetic-queries file not found", path=path)
    wanted = set(types) if types else None
    queries: dict[str, str] = dict(collection.queries) if include_split else {}
    qrels = {q: dict(judged) for q, judged in collection.qrels.items()} if include_split else {}
    seen: dict[str, int] = {}
    per_type: Counter[str] = Counter()
    skipped = 0
    for line, obj in iter_jsonl(path):
        query = require_string(obj, "query", path, line)
        if not query.strip():
            raise InputError("empty text", path=path, line=line, field="query")
        doc_id = require_string(obj, "doc_id", path, line)
        if doc_id not in collection.corpus.index:
            raise InputError(
                f"unknown document id {doc_id!r} (not in {collection.name}'s corpus)",
                path=path,
                line=line,
                field="doc_id",
            )
        query_id = require_string(obj, "query_id", path, line, optional=True) or f"synthetic-{line}"
        if query_id in seen:
            raise InputError(
                f"duplicate query id {query_id!r} (first on line {seen[query_id]})",
                path=path,
                line=line,
                field="query_id",
            )
        if query_id in queries:
            raise InputError(
                f"query id {query_id!r} is also a query of {collection.name} split '{collection.split}'",
                path=path,
                line=line,
                field="query_id",
            )
        seen[query_id] = line
        kind = require_string(obj, "type", path, line, optional=True) or "untyped"
        if wanted is not None and kind not in wanted:
            skipped += 1
            continue
        per_type[kind] += 1
        queries[query_id] = query
        qrels[query_id] = {doc_id: 1}
    if not per_type:
        detail = f" of type {', '.join(sorted(wanted))}" if wanted else ""
        raise InputError(f"no synthetic query{detail}", path=path)
    log.info(
        "%s: %d synthetic queries (%s)%s",
        path,
        sum(per_type.values()),
        ", ".join(f"{k} {n}" for k, n in sorted(per_type.items())),
        f"; {skipped} of other types skipped" if skipped else "",
    )
    split = f"{collection.split}+{SPLIT}" if include_split else SPLIT
    synthetic = Collection(
        collection.name,
        collection.path,
        split,
        collection.corpus,
        queries,
        qrels,
        warnings=list(collection.warnings),
    )
    return synthetic, dict(per_type)


def query_types(path: str | Path, query_ids: set[str] | None = None) -> dict[str, str]:
    """Query id → type of a synthetic-queries file (``untyped`` where a line has none), for the
    ids of ``query_ids`` (all when None); ids default as in :func:`load_synthetic_queries`."""
    types = {}
    for line, obj in iter_jsonl(Path(path)):
        query_id = obj.get("query_id") or f"synthetic-{line}"
        if query_ids is None or query_id in query_ids:
            types[query_id] = obj.get("type") or "untyped"
    return types
