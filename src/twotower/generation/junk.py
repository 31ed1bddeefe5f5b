"""Cleaning a raw completion into a query, and dropping the junk, each drop with its reason.

The cleaning follows what CADET does to its completions (Tamber et al. 2025): the first line,
without surrounding quotes. Small models also number their answers, repeat the label they
were asked to complete ("Question: …"), loop on one token, copy the passage or echo the
prompt; each is a named reason, counted by the job and kept in its dropped file.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from twotower.errors import ConfigError, check_integer

REASONS = ("empty", "too_long", "copies_passage", "repeated_tokens", "prompt_echo")

# "Question:", "**Query 2:**", "Keywords/Phrases -", "Answer:" … at the start of a line.
_LABEL = re.compile(
    r"^\s*(?:[*_#>]+\s*)*(?:(?:sure|okay|ok)\b[!,.]?\s*)?"
    r"(?:here(?:'s| is) (?:a|an|the|my|your) [\w /-]{0,30}?|(?:the|my|a|your) |generated |"
    r"target |search |web |ms ?marco |short |key ?)?"
    r"(?:q|questions?|query|queries|claims?|titles?|keywords?(?:\s*/\s*(?:key\s*)?phrases)?|"
    r"phrases|answer|response|output)(?:\s+is)?"
    r"\s*(?:\d+|\(\d+\))?\s*(?:[*_]+\s*)?(?:[:：]|\s[-–—](?=\s))\s*(?:[*_]+\s*)?",
    re.IGNORECASE,
)
# "Here is a concise claim based on the given passage:" on a line of its own: the answer follows.
_PREAMBLE = re.compile(
    r"^\s*(?:[*_#>]+\s*)*(?:sure|okay|ok|certainly|here|below|the following)\b.*[:：]\s*(?:[*_]+)?\s*$",
    re.IGNORECASE,
)
_NUMBERING = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*•·])\s+")
_QUOTES = "\"'`“”‘’«»*_"
_PUNCTUATION = string.punctuation + "“”‘’«»…–—"
_PROMPT_MARKERS = ("passage:", "target passage", "instructions:")


def _strip_decoration(line: str) -> str:
    previous = None
    while previous != line:
        previous = line
        line = _NUMBERING.sub("", line, count=1)
        line = _LABEL.sub("", line, count=1)
        line = line.strip()
        # Quotes only when they wrap the whole line: a quoted title inside a query stays.
        if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
            line = line[1:-1].strip()
        elif line[:1] in _QUOTES and line[:1] not in "'" and line.count(line[0]) == 1:
            line = line[1:].strip()
        elif line[-1:] in _QUOTES and line[-1:] not in "'" and line.count(line[-1]) == 1:
            line = line[:-1].strip()
    return " ".join(line.split())


def clean_completion(raw: str) -> str:
    """The query in a raw completion: its first line that is more than a label or a preamble
    ("Here is a question:"), without leading labels ("Question:", "The claim is:"), list
    numbering and surrounding quotes, whitespace collapsed."""
    for line in raw.strip().splitlines():
        if _PREAMBLE.match(line):
            continue
        text = _strip_decoration(line)
        if text:
            return text
    return ""


def words(text: str) -> list[str]:
    """Lower-cased whitespace words without their surrounding punctuation ("low-density," →
    "low-density"): what the length, copy and repetition tests count and compare."""
    stripped = (w.strip(_PUNCTUATION).lower() for w in text.split())
    return [w for w in stripped if w]


def longest_shared_span(query: Sequence[str], passage: Sequence[str], at_least: int) -> bool:
    """Whether ``query`` and ``passage`` (word lists) share ``at_least`` consecutive words."""
    if at_least < 1 or len(query) < at_least or len(passage) < at_least:
        return False
    grams = {tuple(passage[i : i + at_least]) for i in range(len(passage) - at_least + 1)}
    return any(tuple(query[i : i + at_least]) in grams for i in range(len(query) - at_least + 1))


@dataclass(frozen=True)
class Verdict:
    """A cleaned query, or the reason it was dropped (and the cleaned text, for the record)."""

    text: str
    reason: str | None = None

    @property
    def kept(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class JunkFilter:
    """Drops a cleaned completion that is ``empty``, ``too_long`` (over ``max_words`` words),
    ``copies_passage`` (``copy_span`` consecutive words of the passage, unless the generator
    copies by design), ``repeated_tokens`` (a word ``max_run`` times in a row, or under
    ``min_distinct`` distinct words per word in a query of 6+ words) or ``prompt_echo`` (a
    prompt marker such as "Passage:", ``echo_span`` consecutive words of an instruction, or the
    whole of a shorter prompt text such as a few-shot example's query)."""

    max_words: int = 32
    copy_span: int = 12
    max_run: int = 3
    min_distinct: float = 0.5
    echo_span: int = 6
    extra_markers: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        check_integer("max_words", self.max_words, minimum=1)
        check_integer("copy_span", self.copy_span, minimum=1)
        check_integer("max_run", self.max_run, minimum=2)
        check_integer("echo_span", self.echo_span, minimum=1)
        if not 0 <= self.min_distinct <= 1:
            raise ConfigError(f"min_distinct: must be in [0, 1], got {self.min_distinct}")

    def check(
        self,
        raw: str,
        passage: str,
        *,
        copies_allowed: bool = False,
        instructions: Iterable[str] = (),
    ) -> Verdict:
        text = clean_completion(raw)
        tokens = words(text)
        if not tokens:
            return Verdict(text, "empty")
        if self._echoes(text, tokens, instructions):
            return Verdict(text, "prompt_echo")
        if len(tokens) > self.max_words:
            return Verdict(text, "too_long")
        if self._repeats(tokens):
            return Verdict(text, "repeated_tokens")
        if not copies_allowed and longest_shared_span(tokens, words(passage), self.copy_span):
            return Verdict(text, "copies_passage")
        return Verdict(text)

    def _echoes(self, text: str, tokens: list[str], instructions: Iterable[str]) -> bool:
        # A model running on into the next few-shot block writes "… Passage: …".
        lowered = text.lower()
        if any(m in lowered for m in (*_PROMPT_MARKERS, *self.extra_markers)):
            return True
        # A prompt text shorter than echo_span (an example query) counts when copied whole.
        for instruction in instructions:
            prompt = words(instruction)
            if prompt and longest_shared_span(tokens, prompt, min(self.echo_span, len(prompt))):
                return True
        return False

    def _repeats(self, tokens: list[str]) -> bool:
        run = 1
        for previous, token in zip(tokens, tokens[1:], strict=False):
            run = run + 1 if token == previous else 1
            if run >= self.max_run:
                return True
        if len(tokens) >= 6 and len(set(tokens)) / len(tokens) < self.min_distinct:
            return True
        # One word making up most of a longer query ("cancer, cancer, cancer risk, cancer …").
        most = Counter(tokens).most_common(1)[0][1]
        return len(tokens) >= 8 and most > len(tokens) / 2
