"""Typed query prompts: an instruction and a pool of few-shot examples per query type.

The six types and their instructions follow CADET (Tamber, Kazi, Sourabh and Lin 2025):
keywords (up to 5, comma separated), titles, claims, questions, MS MARCO-style queries and a
zero-shot "search" query, each asked for in under 20 words, with 3 few-shot examples drawn per
passage. The example passages and queries are this package's own
(``prompt_data/<version>.json``); a file's version is recorded on every generated line.

Two renderings of one prompt: chat messages for instruction-tuned models (tokenizers with a
chat template, chat endpoints), and a few-shot text continuation for base models, where the
model completes the last ``Question:`` line as InPars does (Bonifacio et al. 2022).
"""

from __future__ import annotations

import difflib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from twotower.errors import ConfigError, check_integer, did_you_mean
from twotower.generation.base import GenerationTask, task_seed

PROMPT_VERSION = "v1"
QUERY_TYPES = ("questions", "claims", "titles", "keywords", "search", "msmarco")
# Singular spellings (the synthetic-queries docs write "question", "claim") name the same types.
TYPE_ALIASES = {
    "question": "questions",
    "claim": "claims",
    "title": "titles",
    "keyword": "keywords",
    "ms-marco": "msmarco",
    "ms_marco": "msmarco",
}
DEFAULT_SHOTS = 3
DEFAULT_MAX_PASSAGE_WORDS = 300


def canonical_type(name: str) -> str:
    """A query type's name as written on output lines; unknown → :class:`ConfigError`."""
    key = name.strip().lower()
    key = TYPE_ALIASES.get(key, key)
    if key not in QUERY_TYPES:
        # Nearest of the names and their singulars, suggested by its canonical name.
        close = difflib.get_close_matches(key, [*QUERY_TYPES, *TYPE_ALIASES], n=1, cutoff=0.5)
        hint = did_you_mean(TYPE_ALIASES.get(close[0], close[0]), QUERY_TYPES) if close else ""
        raise ConfigError(f"query type '{name}': expected one of {', '.join(QUERY_TYPES)}{hint}")
    return key


def parse_query_types(types: str | Iterable[str]) -> list[str]:
    """``"questions,claims"`` (or a list of names) → canonical types, in order, each once."""
    names = (
        types.split(",")
        if isinstance(types, str)
        else [t for item in types for t in item.split(",")]
    )
    names = [n for n in names if n.strip()]
    if not names:
        raise ConfigError(f"no query type given: expected some of {', '.join(QUERY_TYPES)}")
    parsed: list[str] = []
    for name in names:
        key = canonical_type(name)
        if key not in parsed:
            parsed.append(key)
    return parsed


def cut_words(text: str, max_words: int | None) -> str:
    """``text`` on one line (newlines and tabs as spaces), cut to its first ``max_words`` words."""
    words = text.split()
    return " ".join(words if max_words is None else words[:max_words])


@dataclass(frozen=True)
class Example:
    passage: str
    query: str


@dataclass(frozen=True)
class PromptType:
    """One query type: how chat prompts ask for it and how few-shot text labels it."""

    name: str
    label: str  # "Question": the line the model completes
    noun: str  # "question": "Now create a question for the following passage"
    system: str
    instruction: str
    header: str  # first line of the few-shot continuation
    examples: tuple[Example, ...]


@dataclass(frozen=True)
class PromptSet:
    version: str
    types: dict[str, PromptType]

    def get(self, query_type: str) -> PromptType:
        return self.types[canonical_type(query_type)]


@cache
def load_prompts(version: str = PROMPT_VERSION) -> PromptSet:
    """The prompt file shipped with the package for ``version``."""
    folder = resources.files("twotower.generation") / "prompt_data"
    source = folder / f"{version}.json"
    if not source.is_file():
        known = sorted(
            p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
        )
        raise ConfigError(
            f"prompt version '{version}': expected one of {', '.join(known)}"
            + did_you_mean(version, known)
        )
    data: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    passages: dict[str, str] = data["passages"]
    types = {}
    for name, spec in data["types"].items():
        examples = tuple(
            Example(passages[e["passage"]], e["query"]) for e in spec.get("examples", [])
        )
        types[name] = PromptType(
            name,
            spec["label"],
            spec["noun"],
            spec["system"],
            spec["instruction"],
            spec["header"],
            examples,
        )
    missing = [t for t in QUERY_TYPES if t not in types]
    if missing:  # a packaging mistake, not a user's
        raise RuntimeError(f"prompt file {source} lacks the types {missing}")
    return PromptSet(data["version"], types)


class PromptBuilder:
    """Renders the prompt of a :class:`GenerationTask`.

    The ``shots`` examples of a prompt are drawn without replacement from its type's pool, from
    a seed of (sampling seed, doc id, type, sample index): each of a passage's samples sees
    other examples, and a re-run (or a resumed run, however it batches) sees the same ones.
    Passages (target and examples) are cut to ``max_passage_words`` words.
    """

    def __init__(
        self,
        *,
        version: str = PROMPT_VERSION,
        shots: int = DEFAULT_SHOTS,
        max_passage_words: int = DEFAULT_MAX_PASSAGE_WORDS,
    ) -> None:
        check_integer("shots", shots, minimum=0)
        check_integer("max_passage_words", max_passage_words, minimum=1)
        self.prompts = load_prompts(version)
        self.version = self.prompts.version
        self.shots = shots
        self.max_passage_words = max_passage_words

    def examples_for(self, task: GenerationTask, seed: int) -> list[Example]:
        pool = self.prompts.get(task.query_type).examples
        rng = random.Random(task_seed(seed, "shots", task.doc_id, task.query_type, task.sample))
        return rng.sample(list(pool), min(self.shots, len(pool)))

    def passage(self, text: str) -> str:
        return cut_words(text, self.max_passage_words)

    def chat(self, task: GenerationTask, seed: int) -> list[dict[str, str]]:
        """System and user messages in CADET's layout."""
        kind = self.prompts.get(task.query_type)
        parts = [f"Instructions: {kind.instruction}"]
        examples = self.examples_for(task, seed)
        if examples:
            parts.append("Examples:")
            parts += [
                f"Target Passage: {self.passage(e.passage)}\n{kind.label}: {e.query}"
                for e in examples
            ]
            parts.append(f"Now create a {kind.noun} for the following passage:")
        parts.append(f"Target Passage: {self.passage(task.passage)}\n{kind.label}:")
        return [
            {"role": "system", "content": kind.system},
            {"role": "user", "content": "\n\n".join(parts)},
        ]

    def continuation(self, task: GenerationTask, seed: int) -> str:
        """Few-shot text a base model continues: ``Passage: …\\nQuestion: …`` blocks, the target
        last with its label line open. Generation stops at the end of that line."""
        kind = self.prompts.get(task.query_type)
        blocks = [kind.header]
        blocks += [
            f"Passage: {self.passage(e.passage)}\n{kind.label}: {e.query}"
            for e in self.examples_for(task, seed)
        ]
        blocks.append(f"Passage: {self.passage(task.passage)}\n{kind.label}:")
        return "\n\n".join(blocks)

    def instructions(self, query_type: str) -> list[str]:
        """The texts a completion echoing its prompt would contain: the instructions and the
        few-shot queries (small models copy an example's query for the target passage)."""
        kind = self.prompts.get(query_type)
        return [kind.system, kind.instruction, kind.header, *(e.query for e in kind.examples)]

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "shots": self.shots,
            "max_passage_words": self.max_passage_words,
        }
