"""TREC run files: ``query-id Q0 doc-id rank score tag`` per line, as trec_eval reads them.

The ranking is taken from the scores, as trec_eval does (the rank column is not trusted), so the
result is a :data:`~twotower.retrieval.Run`. Every error names the file and line.
"""

from __future__ import annotations

import math
from pathlib import Path

from twotower.data.jsonl import iter_lines
from twotower.errors import InputError
from twotower.retrieval import Run


def read_run(path: str | Path) -> Run:
    """``{query_id: {doc_id: score}}`` from a six-column TREC run (the tag column optional)."""
    path = Path(path)
    run: Run = {}
    for line_number, line in iter_lines(path):
        cols = line.split()
        if not cols:
            continue
        if len(cols) not in (5, 6):
            raise InputError(
                f"expected 6 columns (query-id Q0 doc-id rank score tag), found {len(cols)}",
                path=path,
                line=line_number,
            )
        query_id, _, doc_id, _, score_text = cols[:5]
        try:
            score = float(score_text)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise InputError(
                f"score '{score_text}' is not a finite number",
                path=path,
                line=line_number,
                field="score",
            )
        ranking = run.setdefault(query_id, {})
        if doc_id in ranking:
            raise InputError(
                f"document '{doc_id}' ranked twice for query '{query_id}'",
                path=path,
                line=line_number,
            )
        ranking[doc_id] = score
    if not run:
        raise InputError("no ranked documents (an empty run file)", path=path)
    return run
