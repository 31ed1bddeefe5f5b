"""What ``twotower compare`` reads: per-query scores of systems, from results files or run files.

* A results file (``results.json`` of ``twotower run`` / ``adapt``, ``twotower eval -o``) holds
  one entry per (system, collection) with its per-query values under ``per_query_<metric>``
  (``{query id: value}``); nothing is recomputed from it.
* A TREC run file is scored here against the judged queries of the one collection named by
  ``--collections`` (its qrels only: no corpus is read, nothing is encoded).

``LABEL=FILE`` names a file's system: a run file's (default: the file's stem), or the one system
of a results file that is neither ``bm25`` nor ``base`` (``trained`` in a run's results).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twotower.data.beir import Qrels, load_qrels, load_queries
from twotower.data.collection import available_splits
from twotower.data.locate import locate_collection
from twotower.data.run_file import read_run
from twotower.errors import ConfigError, InputError
from twotower.evaluation.metrics import evaluate_run

FIXED_SYSTEMS = ("bm25", "base")  # what a run's results hold besides the trained model
DUAL_SUFFIX = " (dual)"  # how evaluate_dual names its systems; the task is kept apart here


@dataclass(frozen=True)
class Scores:
    """One system's per-query values of one metric on one collection split, and their file."""

    system: str
    collection: str
    split: str
    task: str  # "retrieval", or "dual" (DANCE's: documents rank queries)
    per_query: dict[str, float]
    source: str


@dataclass(frozen=True)
class Source:
    path: Path
    label: str | None = None


def parse_source(text: str) -> Source:
    """``FILE`` or ``LABEL=FILE`` (an existing file of that whole name is a file); a run folder
    stands for its ``results.json``."""
    label, sep, path = text.partition("=")
    if not sep or Path(text).exists() or not label or not path:
        label, path = "", text
    found = Path(path)
    if found.is_dir() and (found / "results.json").is_file():
        found = found / "results.json"
    return Source(found, label or None)


def is_results_file(path: Path) -> bool:
    """A JSON file (results) rather than a TREC run: told by its first non-blank character."""
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[")


def read_results(source: Source, metric: str) -> list[Scores]:
    """The per-query ``metric`` of every entry of a results file."""
    path = source.path
    try:
        payload = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", path=path
        ) from None
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8", path=path) from None
    entries = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(
            "not a results file: expected a non-empty list of systems (as twotower run and"
            " twotower eval -o write)",
            path=path,
            field="results",
        )
    scores = [
        _entry_scores(entry, f"results[{i}]", path, metric) for i, entry in enumerate(entries)
    ]
    return _labelled(scores, source.label, path)


def _entry_scores(entry: Any, where: str, path: Path, metric: str) -> Scores:
    if not isinstance(entry, dict):
        raise InputError("expected an object", path=path, field=where)
    for name in ("system", "data"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            raise InputError("missing or not a string", path=path, field=f"{where}.{name}")
    system = entry["system"]
    details = entry.get("details")
    task = "dual" if isinstance(details, dict) and details.get("task") == "dual" else "retrieval"
    if task == "dual" and system.endswith(DUAL_SUFFIX):
        system = system[: -len(DUAL_SUFFIX)]
    return Scores(
        system=system,
        collection=Path(entry["data"].rstrip("/")).name,
        split=str(entry.get("split") or "test"),
        task=task,
        per_query=_per_query(entry, where, path, metric),
        source=str(path),
    )


def _per_query(entry: dict, where: str, path: Path, metric: str) -> dict[str, float]:
    key = f"per_query_{metric}"
    values = entry.get(key)
    nested = entry.get("per_query")
    if values is None and isinstance(nested, dict):  # EvalResult's own form: {query: {metric: v}}
        values = {q: v[metric] for q, v in nested.items() if isinstance(v, dict) and metric in v}
    if not isinstance(values, dict) or not values:
        kept = sorted(k.removeprefix("per_query_") for k in entry if k.startswith("per_query_"))
        has = f"it has them for {', '.join(kept)} only" if kept else "it keeps none"
        raise InputError(
            f"no per-query scores for {metric} of system '{entry['system']}' ({has})",
            path=path,
            field=f"{where}.{key}",
        )
    out = {}
    for query_id, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise InputError(
                f"query '{query_id}': expected a finite number, got {value!r}",
                path=path,
                field=f"{where}.{key}",
            )
        out[str(query_id)] = float(value)
    return out


def _labelled(scores: list[Scores], label: str | None, path: Path) -> list[Scores]:
    if label is None:
        return scores
    named = sorted({s.system for s in scores if s.system not in FIXED_SYSTEMS})
    if len(named) != 1:
        raise ConfigError(
            f"{label}={path}: a label names the file's one system besides bm25 and base, but it"
            f" holds {len(named)} ({', '.join(named) or 'none'})"
        )
    return [
        Scores(label, s.collection, s.split, s.task, s.per_query, s.source)
        if s.system == named[0]
        else s
        for s in scores
    ]


def judged_qrels(name: str, split: str, data_dir: str | Path | None) -> tuple[str, Qrels]:
    """The collection's name and qrels of its judged queries, by the rule ``twotower eval``
    scores (queries in queries.jsonl with a judgement); no corpus is read."""
    path = locate_collection(name, data_dir, download=False)  # a comparison only reads files
    qrels_path = path / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = ", ".join(available_splits(path)) or "none"
        raise InputError(f"no qrels for split '{split}' (available: {splits})", path=qrels_path)
    queries = load_queries(path / "queries.jsonl")
    qrels = load_qrels(qrels_path)
    return path.name, {q: qrels[q] for q in queries if q in qrels and qrels[q]}


def run_scores(source: Source, metric: str, collection: str, split: str, qrels: Qrels) -> Scores:
    """A TREC run file's per-query ``metric`` (trec_eval's, through pytrec_eval)."""
    run = read_run(source.path)
    if not set(run) & set(qrels):
        raise InputError(
            f"none of its {len(run)} query ids is a judged query of {collection} ({split});"
            " is it a run of another collection?",
            path=source.path,
        )
    _, per_query = evaluate_run(run, qrels, [metric])
    values = {q: v[metric] for q, v in per_query.items()}
    name = source.label or source.path.stem
    return Scores(name, collection, split, "retrieval", values, str(source.path))


def load_scores(
    sources: list[Source],
    metric: str,
    *,
    collections: list[str] | None = None,
    split: str = "test",
    data_dir: str | Path | None = None,
) -> list[Scores]:
    """Every system's scores from ``sources``, in order, kept to ``collections`` if given."""
    for source in sources:
        if not source.path.is_file():
            raise InputError("no such file", path=source.path)
    runs = [s for s in sources if not is_results_file(s.path)]
    run_collection: str | None = None
    qrels: Qrels = {}
    if runs:
        if not collections or len(collections) != 1:
            given = f" (given: {', '.join(collections)})" if collections else ""
            raise ConfigError(
                f"{runs[0].path}: a run file is scored against one collection: give it with"
                f" --collections NAME{given}"
            )
        run_collection, qrels = judged_qrels(collections[0], split, data_dir)
    scores: list[Scores] = []
    for source in sources:
        if source in runs and run_collection is not None:
            scores.append(run_scores(source, metric, run_collection, split, qrels))
        else:
            scores += read_results(source, metric)
    return _kept(scores, collections, run_collection)


def _kept(scores: list[Scores], collections: list[str] | None, run_collection: str | None):
    if not collections:
        return scores
    wanted = {run_collection} if run_collection else {Path(c.rstrip("/")).name for c in collections}
    found = dict.fromkeys(s.collection for s in scores)
    missing = [c for c in wanted if c not in found]
    if missing:
        raise ConfigError(
            f"--collections: no scores for {', '.join(missing)} in the files given"
            f" (they hold {', '.join(found)})"
        )
    return [s for s in scores if s.collection in wanted]
