"""A recipe's ``synthetic`` step: generate queries for the training corpus, round-trip filter them,
and leave the kept ones in ``train.synthetic_queries`` for training (Tamber et al. 2025's
pipeline; docs/methods.md §6).

Files, beside ``train.synthetic_queries`` (FILE.jsonl):

- ``FILE.generated.jsonl``: every generated query (resumable: an interrupted run goes on from
  where it stopped), with ``FILE.generated.dropped.jsonl`` for the junk dropped and why;
- ``FILE.jsonl``: the queries kept by the round-trip filter, ``FILE.dropped.jsonl`` the others
  with their step and reason, ``FILE.report.json`` the keep rates per type and step;
- ``FILE.settings.json``: the synthetic section that made them and FILE's SHA-256, written last.
  A recipe naming FILE with the same settings reuses it as it is (a FILE that does not match
  its checksum is reported and made again); other settings are refused with one line.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from twotower.data.collection import load_corpus
from twotower.data.files import atomic_write, read_manifest, write_manifest
from twotower.errors import ConfigError, InputError
from twotower.generation.base import SamplingSettings
from twotower.generation.job import generate_queries, select_documents
from twotower.generation.roundtrip import filter_file
from twotower.generation.spec import build_generator
from twotower.negatives.retrievers import build_retriever, parse_retriever_spec
from twotower.training.recipe_sections import SyntheticConfig, TrainDataConfig

log = logging.getLogger(__name__)


def generated_path(kept: Path) -> Path:
    return kept.with_name(kept.stem + ".generated.jsonl")


def settings_path(kept: Path) -> Path:
    return kept.with_name(kept.stem + ".settings.json")


def _section(config: SyntheticConfig, train: TrainDataConfig) -> dict[str, Any]:
    return {"data": train.data, **config.model_dump(mode="json")}


def ensure_synthetic_queries(
    config: SyntheticConfig, train: TrainDataConfig, *, device: str | None = None
) -> dict[str, Any]:
    """Make ``train.synthetic_queries`` from a recipe's ``synthetic`` section unless a file
    made with the same settings is there; what was done, for the run's data.json."""
    if not config.generator:
        return {}
    kept = Path(train.synthetic_queries or "")
    wanted = _section(config, train)
    manifest = settings_path(kept)
    made_with, problem = (None, None)
    if kept.is_file() and manifest.is_file():
        made_with, problem = read_manifest(manifest)
    if made_with is not None:
        if made_with != wanted:
            differ = sorted(
                k for k in wanted.keys() | made_with.keys() if wanted.get(k) != made_with.get(k)
            )
            raise ConfigError(
                f"train.synthetic_queries: {kept} was made with other synthetic settings"
                f" ({', '.join(differ)}); delete it or name another file"
            )
        if problem is None:
            log.info("%s: synthetic queries made with these settings; reused", kept)
            return {"reused": str(kept)}
    if problem is not None:
        log.warning("%s: %s (damaged or cut short): made again", kept, problem)
    kept.parent.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {}
    assert train.data is not None  # Recipe: synthetic_queries are for train.data's corpus
    corpus = load_corpus(train.data)
    generator = build_generator(
        config.generator,
        model_name=config.model_name,
        sampling=SamplingSettings(
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            seed=config.seed,
        ),
        batch_size=config.batch_size,
        device=device,
        max_passage_words=config.max_passage_words,
        precision=config.precision,
    )
    doc_ids = select_documents(
        corpus.corpus.ids, limit=config.limit, sample=config.sample, seed=config.seed
    )
    texts = dict(zip(corpus.corpus.ids, corpus.corpus.texts, strict=True))
    generated = generated_path(kept)
    types = None if generator.fixed_types else config.types
    try:
        report = generate_queries(
            texts,
            doc_ids,
            types,
            config.per_doc,
            generator,
            generated,
            batch_size=config.batch_size,
        )
    finally:
        generator.close()
    info["generation"] = report.as_dict()
    if not _has_line(generated):  # nothing to train on: say why, before an empty file is kept
        raise InputError(
            f"no usable passage: {generator.kind} wrote no query for any of the {len(doc_ids)}"
            f" passages (empty, or every query dropped as junk: see {report.dropped_file})",
            path=corpus.corpus.path,
        )
    if config.filter is None:
        with generated.open("rb") as source, atomic_write(kept, "wb") as copy:
            shutil.copyfileobj(source, copy)
        info["filter"] = None
    else:
        retrievers = [
            build_retriever(*parse_retriever_spec(s), device=device)
            for s in config.filter.retrievers
        ]
        info["filter"], _ = filter_file(
            generated,
            corpus,
            retrievers,
            kept,
            top_k=config.filter.top_k,
            teacher=config.filter.teacher,
            teacher_options={"device": device},
            percentile=config.filter.percentile,
            first_stage_rule=config.filter.first_stage_rule,
            percentile_of=config.filter.percentile_of,
            per_type=config.filter.per_type,
        )
        with atomic_write(kept.with_name(kept.stem + ".report.json")) as handle:
            handle.write(json.dumps(info, indent=2) + "\n")
    write_manifest(manifest, wanted, [kept])  # last: the file is complete
    return info


def _has_line(path: Path) -> bool:
    with path.open("rb") as handle:
        return any(line.strip() for line in handle)
