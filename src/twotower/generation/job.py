"""A generation job: typed synthetic queries for a corpus' passages, written as they come.

Every (passage, query type, sample index) is one task. Tasks go to the generator in batches;
each completion is cleaned and junk-filtered (:mod:`twotower.generation.junk`), and as soon as
its batch is done a kept query is appended to the output JSONL and a dropped one, with its
reason and raw text, to the side file ``OUTPUT.dropped.jsonl``. A kept line is a synthetic
query as :func:`twotower.data.synthetic.load_synthetic_queries` reads it (Tamber et al. 2025
train on such typed queries)::

    {"query": "…", "type": "questions", "doc_id": "4983", "query_id": "gen-4983-questions-0",
     "sample": 0, "generator": {…}, "prompt_version": "v1", "sampling": {…}}

Every line carries a checksum of its fields (:func:`twotower.data.jsonl.with_line_checksum`).
A re-run with the same output resumes: the tasks of both files are done and skipped, so
nothing is generated twice; a last line cut short by a kill is cut off and regenerated, and a
damaged line (not matching its checksum) is moved to ``OUTPUT.damaged.jsonl`` and regenerated.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from twotower.data.files import raise_if_disk_full
from twotower.data.jsonl import with_line_checksum
from twotower.errors import ConfigError, check_integer
from twotower.generation.base import GenerationTask, Generator, SamplingSettings
from twotower.generation.junk import JunkFilter
from twotower.generation.prompts import PROMPT_VERSION, parse_query_types
from twotower.generation.resume import read_done

log = logging.getLogger(__name__)

DROPPED_SUFFIX = ".dropped.jsonl"
EMPTY_PASSAGE = "empty_passage"  # a drop reason of the job: nothing to write a query for


def dropped_path(output: str | Path) -> Path:
    """``queries.jsonl`` → ``queries.dropped.jsonl``: where the dropped completions go."""
    output = Path(output)
    stem = output.name.removesuffix(".jsonl")
    return output.with_name(stem + DROPPED_SUFFIX)


def query_id(doc_id: str, query_type: str, sample: int) -> str:
    """Unique per (doc, type, sample): types have no dash, so the id parses from the right."""
    return f"gen-{doc_id}-{query_type}-{sample}"


def select_documents(
    doc_ids: Sequence[str],
    *,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> list[str]:
    """The documents to write queries for: all of them, the first ``limit`` in corpus order, or
    a uniform random ``sample`` of the corpus drawn with ``seed`` (kept in corpus order). Never
    chosen by relevance judgements: generated queries must not leak the test qrels."""
    if limit is not None and sample is not None:
        raise ConfigError("--limit and --sample choose documents in two ways; give one")
    check_integer("limit", limit, minimum=1, optional=True)
    check_integer("sample", sample, minimum=1, optional=True)
    check_integer("seed", seed, minimum=0)
    ids = list(doc_ids)
    if limit is not None:
        return ids[:limit]
    if sample is not None:
        if sample >= len(ids):
            return ids
        chosen = set(random.Random(seed).sample(range(len(ids)), sample))
        return [doc_id for i, doc_id in enumerate(ids) if i in chosen]
    return ids


@dataclass
class GenerationReport:
    """What a :func:`generate_queries` call did (this run only, except ``skipped_done``)."""

    output: Path
    dropped_file: Path
    documents: int
    tasks: int
    generator: dict[str, Any]
    written: int = 0
    skipped_done: int = 0
    dropped: Counter = field(default_factory=Counter)
    written_by_type: Counter = field(default_factory=Counter)
    dropped_by_type: dict[str, Counter] = field(default_factory=dict)
    seconds: float = 0.0
    generated_tokens: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def queries_per_second(self) -> float:
        """Kept queries per second of generation."""
        return self.written / self.seconds if self.seconds > 0 else 0.0

    @property
    def completions_per_second(self) -> float:
        """Completions (kept or dropped) per second: the back-end's throughput."""
        return (self.written + self.dropped_total) / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "dropped_file": str(self.dropped_file),
            "generator": self.generator,
            "documents": self.documents,
            "tasks": self.tasks,
            "written": self.written,
            "written_by_type": dict(self.written_by_type),
            "dropped": dict(self.dropped),
            "dropped_by_type": {t: dict(c) for t, c in self.dropped_by_type.items()},
            "skipped_done": self.skipped_done,
            "seconds": round(self.seconds, 3),
            "generated_tokens": self.generated_tokens,
            "queries_per_second": round(self.queries_per_second, 3),
            "completions_per_second": round(self.completions_per_second, 3),
            "tokens_per_second": round(self.tokens_per_second, 3),
        }


def _settings(generator: Generator) -> dict[str, Any]:
    """What each line records of the run: compared on resume."""
    uses_prompts = getattr(generator, "prompts", None) is not None
    return {
        "generator": generator.describe(),
        "prompt_version": PROMPT_VERSION if uses_prompts else None,
        "sampling": generator.sampling.as_dict(),
    }


def generate_queries(
    corpus: Mapping[str, str],
    doc_ids: Sequence[str],
    types: Sequence[str] | str | None,
    per_doc: int,
    generator: Generator,
    output_path: str | Path,
    *,
    sampling: SamplingSettings | None = None,
    batch_size: int | None = None,
    junk: JunkFilter | None = None,
    progress: bool = True,
) -> GenerationReport:
    """Write ``per_doc`` queries of each type in ``types`` for each of ``doc_ids`` (texts in
    ``corpus``) with ``generator`` to ``output_path``, resuming what it already holds.

    ``types`` are query types of :data:`~twotower.generation.prompts.QUERY_TYPES` for a model
    generator; a generator with fixed types (``ict``, ``crop``, ``ict+crop``) writes those
    (``types`` empty, or some of them). ``sampling`` replaces the generator's settings; ``batch_size`` (tasks
    per call, default the generator's) bounds how much a kill loses.
    """
    check_integer("per_doc", per_doc, minimum=1)
    if sampling is not None:
        generator.sampling = sampling
    size = batch_size if batch_size is not None else generator.batch_size
    check_integer("batch_size", size, minimum=1)
    if generator.fixed_types:
        given = [] if types is None else ([types] if isinstance(types, str) else list(types))
        given = [t.strip() for item in given for t in item.split(",") if t.strip()]
        wrong = [t for t in given if t not in generator.fixed_types]
        if wrong:
            raise ConfigError(
                f"the {generator.kind} generator writes queries of type"
                f" {', '.join(repr(t) for t in generator.fixed_types)} only, not"
                f" {', '.join(wrong)}; drop --types"
            )
        kinds = [t for t in generator.fixed_types if not given or t in given]
    else:
        if types is None:
            raise ConfigError("a model generator needs the query types to write (--types)")
        kinds = parse_query_types(types)
    missing = [d for d in doc_ids if d not in corpus]
    if missing:
        raise ConfigError(f"{len(missing)} document ids are not in the corpus, e.g. {missing[:3]}")

    output = Path(output_path)
    side = dropped_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    settings = _settings(generator)
    done = read_done(output, settings) | read_done(side, settings)
    tasks = [
        GenerationTask(doc_id, corpus[doc_id], kind, i)
        for doc_id in doc_ids
        for kind in kinds
        for i in range(per_doc)
    ]
    pending = [t for t in tasks if t.key not in done]
    report = GenerationReport(
        output,
        side,
        documents=len(doc_ids),
        tasks=len(tasks),
        generator=settings["generator"],
        skipped_done=len(tasks) - len(pending),
    )
    if report.skipped_done:
        log.info(
            "%s: %d of %d tasks already done, skipped", output, report.skipped_done, len(tasks)
        )
    junk = junk or JunkFilter()
    tokens_before = generator.generated_tokens
    started = time.perf_counter()
    try:
        with (
            output.open("a", encoding="utf-8") as kept_file,
            side.open("a", encoding="utf-8") as dropped_file,
            tqdm(
                total=len(pending),
                desc=f"Generating ({generator.kind})",
                unit="query",
                disable=not progress or not pending,
            ) as bar,
        ):
            for start in range(0, len(pending), size):
                batch = pending[start : start + size]
                _run_batch(batch, generator, junk, settings, report, kept_file, dropped_file)
                bar.update(len(batch))
                bar.set_postfix(written=report.written, dropped=report.dropped_total, refresh=False)
    except BaseException:
        log.warning(
            "stopped with %d queries written this run (%s); the same command resumes",
            report.written,
            output,
        )
        raise
    finally:
        report.seconds = time.perf_counter() - started
        report.generated_tokens = generator.generated_tokens - tokens_before
    return report


def _run_batch(
    batch: list[GenerationTask],
    generator: Generator,
    junk: JunkFilter,
    settings: dict[str, Any],
    report: GenerationReport,
    kept_file,
    dropped_file,
) -> None:
    work = [t for t in batch if t.passage.strip()]
    completions = generator.generate(work) if work else []
    if len(completions) != len(work):
        raise RuntimeError(
            f"{generator!r} returned {len(completions)} completions for {len(work)} tasks"
        )
    raw_of = {t.key: c for t, c in zip(work, completions, strict=True)}
    kept_lines: list[dict[str, Any]] = []
    dropped_lines: list[dict[str, Any]] = []
    for task in batch:
        line: dict[str, Any] = {
            "doc_id": task.doc_id,
            "type": task.query_type,
            "query_id": query_id(task.doc_id, task.query_type, task.sample),
            "sample": task.sample,
        }
        reason: str | None
        if task.key not in raw_of:
            reason, raw, text = EMPTY_PASSAGE, "", ""
        else:
            raw = raw_of[task.key]
            verdict = junk.check(
                raw,
                task.passage,
                copies_allowed=generator.copies_passage,
                instructions=generator.instructions(task.query_type),
            )
            reason, text = verdict.reason, verdict.text
        if reason is None:
            positive = generator.positive(task, text)
            kept = {"query": text, **line}
            if positive is not None:
                kept["positive"] = positive
            kept_lines.append(with_line_checksum({**kept, **settings}))
            report.written += 1
            report.written_by_type[task.query_type] += 1
        else:
            dropped_lines.append(
                with_line_checksum({**line, "reason": reason, "text": text, "raw": raw, **settings})
            )
            report.dropped[reason] += 1
            report.dropped_by_type.setdefault(task.query_type, Counter())[reason] += 1
    # Whole lines, then a flush: a kill or a full disk leaves at most one cut line, which
    # resume repairs.
    for lines, handle in ((kept_lines, kept_file), (dropped_lines, dropped_file)):
        if lines:
            try:
                handle.write("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
                handle.flush()
            except OSError as exc:
                raise_if_disk_full(exc, handle.name)
                raise
