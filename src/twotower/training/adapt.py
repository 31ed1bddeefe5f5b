"""No-label adaptation (``twotower adapt``): from a corpus alone to a retriever fine-tuned on it.

The adaptation recipe (``adapt.yaml`` beside this module, also ``recipes/adapt.yaml``) runs the
stages of :func:`twotower.training.run.run_recipe` on the corpus of ``data``, reading none of its
relevance judgements for training:

1. queries written for the passages of the corpus (the recipe's ``synthetic`` section; every
   passage, or a seeded uniform sample), resumable line by line;
2. a candidate list per query, mined by the teacher's first stage;
3. the teacher's scores of each list (cached per pair);
4. listwise distillation of those scores into the query tower, against the frozen document index,
   then WiSE-FT towards the base model;
5. where ``data`` has judged test queries, the paired comparison of the adapted model with the base
   model and BM25 on them (and on any other collection named).

Each stage reuses what an interrupted run left (generated lines, cached embeddings, mined tables,
teacher scores, checkpoints), so the same command resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twotower.data.collection import available_splits
from twotower.data.locate import locate_collection
from twotower.errors import ConfigError
from twotower.teachers.spec import ALIASES
from twotower.training.recipe import Recipe, load_recipe

ADAPT_RECIPE = Path(__file__).with_name("adapt.yaml")


@dataclass(frozen=True)
class AdaptOptions:
    """What ``twotower adapt`` lets a user change without writing a recipe; None keeps the
    recipe's value.

    Attributes:
        data: the collection (name or BEIR folder) whose corpus the model adapts to.
        output_dir: the run folder; the synthetic queries are written inside it.
        model: the model to adapt (sentence-transformers name or folder).
        teacher: ``fusion:MODEL`` (BM25 + a dense model), ``cross_encoder:MODEL`` or
            ``bi_encoder:MODEL``; a fusion teacher also mines the candidate lists.
        generator: ``ict`` or ``crop`` (no model), a local LLM (``smollm2``, a folder, a .gguf)
            or an OpenAI-compatible URL.
        per_doc: queries per passage (per query type for an LLM).
        sample: passages drawn uniformly (seeded) instead of the whole corpus.
        evaluate: extra collections evaluated zero-shot beside ``data``.
    """

    data: str
    output_dir: Path
    model: str | None = None
    teacher: str | None = None
    generator: str | None = None
    per_doc: int | None = None
    sample: int | None = None
    evaluate: tuple[str, ...] = ()


def _teacher_overrides(spec: str) -> list[str]:
    """``KIND:MODEL`` as recipe keys; the recipe's teacher section validates both."""
    kind, _, model = spec.partition(":")
    kind = ALIASES.get(kind.strip().lower(), kind.strip().lower())  # cross-encoder:… as elsewhere
    if not model:
        raise ConfigError(f"--teacher {spec!r}: expected KIND:MODEL, e.g. fusion:all-mpnet-base-v2")
    sets = [f"teacher.kind={kind}", f"teacher.model={model}"]
    if kind == "fusion":  # the teacher's own first stage proposes the lists it scores
        sets.append(f"negatives.model={model}")
    return sets


def adapt_recipe(
    options: AdaptOptions, overrides: list[str] | None = None, recipe: Path = ADAPT_RECIPE
) -> Recipe:
    """The adaptation recipe for ``options`` (then ``overrides``, ``--set`` style, applied)."""

    path = locate_collection(options.data)
    sets = [
        f"train.data={options.data}",
        f"train.synthetic_queries={options.output_dir / 'queries' / 'queries.jsonl'}",
        f"output_dir={options.output_dir}",
        f"name=adapt-{path.name}",
    ]
    if options.model:
        sets.append(f"model.name={options.model}")
    if options.teacher:
        sets += _teacher_overrides(options.teacher)
    if options.generator:
        sets.append(f"synthetic.generator={options.generator}")
    if options.per_doc is not None:
        sets.append(f"synthetic.per_doc={options.per_doc}")
    if options.sample is not None:
        sets.append(f"synthetic.sample={options.sample}")
    evaluated = [options.data] if "test" in available_splits(path) else []
    evaluated += [c for c in options.evaluate if c not in evaluated]
    sets.append(f"eval.collections=[{', '.join(repr(str(c)) for c in evaluated)}]")
    return load_recipe(recipe, sets + list(overrides or []))
