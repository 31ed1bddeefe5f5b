"""Queries cut from the passage itself, no model: the inverse cloze task and random cropping.

- ``ict`` (Lee, Chang and Toutanova 2019): a sentence of the passage is the query. ICT removes
  it from the passage 90% of the time so the model learns more than word matching; here the
  choice is the generator's ``remove_sentence`` (on by default), and a removed sentence's
  passage is written on the line as ``positive`` (a ``twotower`` pairs file reads it; as a
  synthetic-queries file the line trains on the whole corpus document, ICT's 10% case).
- ``crop`` (Izacard et al. 2021, Contriever): a random contiguous span of the passage,
  ``min_words`` to ``max_words`` words, is the query; the whole document stays its positive.
- ``ict+crop``: both, ``per_doc`` of each type per passage — a mix of query types, which
  Tamber et al. 2025 found better than one type at equal counts.

Both are seeded by (seed, doc id, sample index), so a re-run writes the same queries.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from twotower.errors import ConfigError, check_integer
from twotower.generation.base import GenerationTask, Generator, SamplingSettings, task_seed

_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
# A period after these does not end a sentence ("et al. 2019", "e.g. mice").
_ABBREVIATIONS = ("e.g.", "i.e.", "al.", "fig.", "figs.", "vs.", "approx.", "dr.", "no.", "ca.")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (a rule-based split that survives "et al." and "e.g.")."""
    text = " ".join(text.split())
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        piece = text[start : match.start()].strip()
        last = piece.rsplit(" ", 1)[-1].lower() if piece else ""
        if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


class ICTGenerator(Generator):
    """Inverse cloze task queries: one sentence of the passage per sample.

    A passage's sentences are shuffled once per (seed, doc id), and sample ``i`` takes the
    ``i``-th, so a passage's samples are different sentences while it has enough. Sentences of
    ``min_words`` to ``max_words`` words are preferred (the junk filter drops longer ones).
    """

    kind = "ict"
    copies_passage = True
    fixed_types = ("ict",)

    def __init__(
        self,
        *,
        sampling: SamplingSettings | None = None,
        batch_size: int = 256,
        remove_sentence: bool = True,
        min_words: int = 4,
        max_words: int = 32,
    ) -> None:
        super().__init__(name="ict", sampling=sampling, batch_size=batch_size)
        check_integer("min_words", min_words, minimum=1)
        check_integer("max_words", max_words, minimum=min_words)
        self.remove_sentence = remove_sentence
        self.min_words = min_words
        self.max_words = max_words

    def _choose(self, task: GenerationTask) -> tuple[list[str], int]:
        sentences = split_sentences(task.passage)
        if not sentences:
            return [], -1
        fit = [
            i for i, s in enumerate(sentences) if self.min_words <= len(s.split()) <= self.max_words
        ]
        order = fit or list(range(len(sentences)))
        random.Random(task_seed(self.sampling.seed, self.kind, task.doc_id)).shuffle(order)
        return sentences, order[task.sample % len(order)]

    def generate(self, tasks: Sequence[GenerationTask]) -> list[str]:
        out = []
        for task in tasks:
            sentences, index = self._choose(task)
            out.append(sentences[index] if sentences else "")
        return out

    def positive(self, task: GenerationTask, query: str) -> str | None:
        if not self.remove_sentence:
            return None
        sentences, index = self._choose(task)
        if len(sentences) < 2:  # removing the only sentence would leave nothing to match
            return None
        return " ".join(s for i, s in enumerate(sentences) if i != index)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "remove_sentence": self.remove_sentence,
            "min_words": self.min_words,
            "max_words": self.max_words,
        }


class CropGenerator(Generator):
    """Random-cropping queries (Contriever): a span of ``min_words``..``max_words`` words
    (uniform length, uniform start), the whole passage when it is shorter."""

    kind = "crop"
    copies_passage = True
    fixed_types = ("crop",)

    def __init__(
        self,
        *,
        sampling: SamplingSettings | None = None,
        batch_size: int = 256,
        min_words: int = 5,
        max_words: int = 30,
    ) -> None:
        super().__init__(name="crop", sampling=sampling, batch_size=batch_size)
        check_integer("min_words", min_words, minimum=1)
        if isinstance(max_words, int) and max_words < min_words:
            raise ConfigError(f"max_words ({max_words}) is below min_words ({min_words})")
        check_integer("max_words", max_words, minimum=1)
        self.min_words = min_words
        self.max_words = max_words

    def generate(self, tasks: Sequence[GenerationTask]) -> list[str]:
        out = []
        for task in tasks:
            words = task.passage.split()
            rng = random.Random(task_seed(self.sampling.seed, self.kind, task.doc_id, task.sample))
            length = min(rng.randint(self.min_words, self.max_words), len(words))
            start = rng.randint(0, len(words) - length)
            out.append(" ".join(words[start : start + length]))
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "min_words": self.min_words, "max_words": self.max_words}


class MixedGenerator(Generator):
    """Several cut-from-the-passage generators, one query type each: a task of type ``t`` is
    written by the part whose type is ``t``, exactly as that part alone would write it."""

    kind = "mix"
    copies_passage = True

    def __init__(self, parts: Sequence[Generator]) -> None:
        types = [t for part in parts for t in part.fixed_types]
        if len(parts) < 2 or len(set(types)) != len(types) or len(types) != len(parts):
            raise ConfigError("a mix needs two or more generators of one distinct query type each")
        self.parts = {part.fixed_types[0]: part for part in parts}
        super().__init__(
            name="+".join(self.parts),
            sampling=parts[0].sampling,
            batch_size=max(p.batch_size for p in parts),
        )
        self.fixed_types = tuple(self.parts)

    @property
    def sampling(self) -> SamplingSettings:
        return self._sampling

    @sampling.setter
    def sampling(self, value: SamplingSettings) -> None:  # the job sets it on the mix: pass it on
        self._sampling = value
        for part in getattr(self, "parts", {}).values():
            part.sampling = value

    def generate(self, tasks: Sequence[GenerationTask]) -> list[str]:
        out: list[str] = [""] * len(tasks)
        for kind, part in self.parts.items():
            rows = [i for i, task in enumerate(tasks) if task.query_type == kind]
            for i, text in zip(rows, part.generate([tasks[i] for i in rows]), strict=True):
                out[i] = text
        return out

    def positive(self, task: GenerationTask, query: str) -> str | None:
        return self.parts[task.query_type].positive(task, query)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "parts": [p.describe() for p in self.parts.values()]}
