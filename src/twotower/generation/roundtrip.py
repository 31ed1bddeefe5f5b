"""Round-trip filtering of synthetic queries: keep a query only if it finds its own passage.

A generated query is kept when its source passage ranks within the top ``top_k`` of any one
first-stage retriever (``first_stage_rule="any"``; ``"fused"``: within the top ``top_k`` of the
retrievers fused by reciprocal rank fusion, k 60), then, optionally, when a teacher reranking the
candidates (every retriever's top ``top_k``, or the fused top ``top_k``) puts the source first,
and then, optionally, when the teacher's score of the source is not below the
``percentile``-th percentile of the teacher's scores of all candidates of the queries still kept,
queries of each type against their own type's scores (``percentile_of="best"`` with
``per_type=False``: the percentile of the kept queries' best scores, all types together).
Round-trip consistency is Alberti et al. (2019)'s and Promptagator's (Dai et al. 2022); the three
steps with their defaults (top 20 of any of three retrievers, a cross-encoder ranking the source
first, the 25th percentile of all candidate scores per query type) are Tamber et al. (2025)'s.

Every query gets a verdict: kept, or the step that dropped it and why (the source's rank, the
document the teacher preferred, the score against the threshold), so a user can audit the
filter; keep rates are reported per query type after each step.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from twotower.data.collection import Collection
from twotower.data.files import atomic_write
from twotower.data.jsonl import iter_jsonl, with_line_checksum
from twotower.data.synthetic import load_synthetic_queries, query_types
from twotower.errors import ConfigError, check_percentile
from twotower.negatives.retrievers import Retriever
from twotower.retrieval import Run
from twotower.retrieval.fusion import rrf_fusion
from twotower.teachers.base import Teacher
from twotower.teachers.normalize import (
    ALL_TYPES,
    PercentileOf,
    keep_queries,
    weak_query_thresholds,
)
from twotower.teachers.spec import build_teacher, parse_teacher_spec

log = logging.getLogger(__name__)

STEPS = ("retrieval", "teacher", "percentile")
FIRST_STAGE_RULES = ("any", "fused")
FirstStageRule = Literal["any", "fused"]


@dataclass
class RoundTripVerdict:
    query_id: str
    kept: bool = True
    step: str | None = None  # the step that dropped it
    reason: str | None = None
    source_rank: int | None = None  # the source's best rank in the first stage
    teacher_score: float | None = None  # the teacher's score of the source passage
    teacher_first: str | None = None  # the document the teacher ranked first


@dataclass
class FilterReport:
    """Queries in and kept per step and per query type."""

    types: dict[str, str]  # query id → type
    passed: dict[str, Counter] = field(default_factory=dict)  # step → type → kept after it
    # The percentile cut per query type ("all" when the types share one).
    thresholds: dict[str, float] = field(default_factory=dict)

    def table(self) -> list[dict]:
        total = Counter(self.types.values())
        rows = []
        for kind in sorted(total):
            row = {"type": kind, "generated": total[kind]}
            for step, counts in self.passed.items():
                row[step] = counts[kind]
                row[f"{step}_rate"] = counts[kind] / total[kind]
            rows.append(row)
        all_row: dict[str, Any] = {"type": "all", "generated": sum(total.values())}
        for step, counts in self.passed.items():
            all_row[step] = sum(counts.values())
            all_row[f"{step}_rate"] = all_row[step] / max(1, all_row["generated"])
        return rows + [all_row]


def first_stage(
    collection: Collection,
    query_ids: Sequence[str],
    retrievers: Sequence[Retriever],
    depth: int,
    rule: FirstStageRule = "any",
) -> tuple[Run, list[Run]]:
    """The candidates of each query, and the rankings the source passage is looked for in.

    ``any``: every retriever's top ``depth`` (candidates: their union, in reciprocal rank
    fusion order), the source looked for in each; ``fused``: the top ``depth`` of the
    retrievers fused by reciprocal rank fusion, the source looked for there. One retriever:
    its top ``depth`` either way.
    """
    if not retrievers:
        raise ConfigError("round-trip filtering needs at least one retriever")
    if rule not in FIRST_STAGE_RULES:
        raise ConfigError(f"first_stage_rule must be 'any' or 'fused', got {rule!r}")
    runs = [r.run(collection, query_ids, depth) for r in retrievers]
    if len(runs) == 1:
        return runs[0], runs
    if rule == "fused":
        fused = rrf_fusion(*runs, k=depth)
        return fused, [fused]
    return rrf_fusion(*runs), runs


def roundtrip_filter(
    collection: Collection,
    types: dict[str, str],
    retrievers: Sequence[Retriever],
    *,
    top_k: int = 20,
    teacher: Teacher | None = None,
    percentile: float | None = None,
    first_stage_rule: FirstStageRule = "any",
    percentile_of: PercentileOf = "all",
    per_type: bool = True,
) -> tuple[dict[str, RoundTripVerdict], FilterReport]:
    """Verdicts for every query of ``collection`` (synthetic queries, each judging its source
    passage relevant; ``types``: query id → type); see the module docstring."""
    if top_k < 1:
        raise ConfigError(f"top_k must be positive, got {top_k}")
    check_percentile("percentile", percentile)
    if percentile is not None and teacher is None:
        raise ConfigError("a percentile cut needs a teacher (it cuts on the teacher's best score)")
    if percentile_of not in ("all", "best"):
        raise ConfigError(f"percentile_of must be 'all' or 'best', got {percentile_of!r}")
    query_ids = list(collection.queries)
    source = {q: next(iter(collection.qrels[q])) for q in query_ids}
    verdicts = {q: RoundTripVerdict(q) for q in query_ids}
    report = FilterReport(types={q: types.get(q, "untyped") for q in query_ids})

    run, rankings = first_stage(collection, query_ids, retrievers, top_k, first_stage_rule)
    where = "" if len(rankings) == 1 else " of any retriever"
    for q in query_ids:
        ranks = [
            ranked.index(source[q]) + 1
            for ranked in (list(r.get(q, {}))[:top_k] for r in rankings)
            if source[q] in ranked
        ]
        if ranks:
            verdicts[q].source_rank = min(ranks)
        else:
            _drop(verdicts[q], "retrieval", f"source passage not in the top {top_k}{where}")
    report.passed["retrieval"] = _kept(verdicts, report)

    if teacher is not None:
        survivors = [q for q in query_ids if verdicts[q].kept]
        pairs = [(q, d) for q in survivors for d in run[q]]
        scores = teacher.score_pairs(
            [collection.queries[q] for q, _ in pairs],
            [collection.corpus.text_of(d) for _, d in pairs],
        )
        by_query: dict[str, dict[str, float]] = {}
        for (q, d), s in zip(pairs, scores.tolist(), strict=True):
            by_query.setdefault(q, {})[d] = float(s)
        for q in survivors:
            scored = by_query[q]
            best = max(scored, key=lambda d: (scored[d], d == source[q]))
            verdicts[q].teacher_score, verdicts[q].teacher_first = scored[source[q]], best
            if best != source[q]:
                _drop(
                    verdicts[q],
                    "teacher",
                    f"teacher ranked {best} first ({scored[best]:.4g} > {scored[source[q]]:.4g})",
                )
        report.passed["teacher"] = _kept(verdicts, report)

    if percentile is not None:
        kept = {q: by_query[q] for q in query_ids if verdicts[q].kept}
        groups = report.types if per_type else None
        thresholds = weak_query_thresholds(kept, percentile, of=percentile_of, types=groups)
        report.thresholds = thresholds
        passing = set(keep_queries(kept, percentile, of=percentile_of, types=groups))
        for q in kept:
            if q not in passing:
                threshold = thresholds[report.types[q] if per_type else ALL_TYPES]
                _drop(
                    verdicts[q],
                    "percentile",
                    f"teacher score {verdicts[q].teacher_score:.4g} below the"
                    f" {percentile:g}th percentile {threshold:.4g}",
                )
        report.passed["percentile"] = _kept(verdicts, report)
    return verdicts, report


def _drop(verdict: RoundTripVerdict, step: str, reason: str) -> None:
    verdict.kept, verdict.step, verdict.reason = False, step, reason


def _kept(verdicts: dict[str, RoundTripVerdict], report: FilterReport) -> Counter:
    return Counter(report.types[q] for q, v in verdicts.items() if v.kept)


def write_filtered(
    queries_path: Path, verdicts: dict[str, RoundTripVerdict], kept_path: Path
) -> tuple[Path, Path]:
    """The kept lines of ``queries_path`` (each with its filter record) to ``kept_path``, the
    dropped ones with their step and reason beside it (``*.dropped.jsonl``); both written
    atomically, so a failed run leaves no half file."""
    dropped_path = kept_path.with_name(kept_path.stem + ".dropped.jsonl")
    with atomic_write(kept_path) as kept, atomic_write(dropped_path) as dropped:
        for line, obj in iter_jsonl(queries_path):
            query_id = obj.get("query_id") or f"synthetic-{line}"
            verdict = verdicts.get(query_id)
            if verdict is None:  # not in the filtered set (another type)
                continue
            record = {
                k: v
                for k, v in vars(verdict).items()
                if v is not None and k not in ("query_id", "kept")
            }
            out = kept if verdict.kept else dropped
            row = with_line_checksum({**obj, "query_id": query_id, "filter": record})
            out.write(json.dumps(row) + "\n")
    return kept_path, dropped_path


def examples_by_reason(
    collection: Collection,
    verdicts: dict[str, RoundTripVerdict],
    types: dict[str, str],
    per_type: int = 2,
) -> dict[str, dict[str, list[str]]]:
    """A few kept and dropped queries of each type, for a report."""
    out: dict[str, dict[str, list[str]]] = {}
    for q, verdict in verdicts.items():
        bucket = out.setdefault(types.get(q, "untyped"), {"kept": [], "dropped": []})
        key = "kept" if verdict.kept else "dropped"
        if len(bucket[key]) < per_type:
            text = collection.queries[q]
            bucket[key].append(
                text if verdict.kept else f"{text}  [{verdict.step}: {verdict.reason}]"
            )
    return out


def filter_file(
    queries_path: Path,
    corpus: Collection,
    retrievers: Sequence[Retriever],
    kept_path: Path,
    *,
    top_k: int = 20,
    teacher: str | None = None,
    teacher_options: Mapping[str, Any] | None = None,
    percentile: float | None = None,
    types: Sequence[str] | None = None,
    first_stage_rule: FirstStageRule = "any",
    percentile_of: PercentileOf = "all",
    per_type: bool = True,
) -> tuple[dict[str, Any], FilterReport]:
    """Round-trip filter a generated-queries file of ``corpus``'s passages (``types`` only, when
    given) into ``kept_path`` and its ``.dropped.jsonl``; a summary for a report, and the
    report. ``teacher`` is a ``KIND:NAME`` spec, loaded with ``teacher_options``; the rules as
    :func:`roundtrip_filter`."""
    started = time.perf_counter()
    collection, _ = load_synthetic_queries(queries_path, corpus, types=types)
    by_type = query_types(queries_path, set(collection.queries))
    scorer = (
        build_teacher(
            *parse_teacher_spec(teacher), collection=collection, **(teacher_options or {})
        )
        if teacher
        else None
    )
    verdicts, report = roundtrip_filter(
        collection,
        by_type,
        retrievers,
        top_k=top_k,
        teacher=scorer,
        percentile=percentile,
        first_stage_rule=first_stage_rule,
        percentile_of=percentile_of,
        per_type=per_type,
    )
    _, dropped = write_filtered(queries_path, verdicts, kept_path)
    summary = {
        "queries": str(queries_path),
        "retrievers": [r.name for r in retrievers],
        "top_k": top_k,
        "first_stage": first_stage_rule,
        "teacher": teacher,
        "percentile": percentile,
        "percentile_of": percentile_of,
        "percentile_per_type": per_type,
        "percentile_thresholds": report.thresholds,
        "keep_rates": report.table(),
        "kept": sum(v.kept for v in verdicts.values()),
        "dropped_file": str(dropped),
        "seconds": time.perf_counter() - started,
        "examples": examples_by_reason(collection, verdicts, by_type),
    }
    return summary, report
