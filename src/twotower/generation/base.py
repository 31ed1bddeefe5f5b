"""The generator interface: one raw completion per (passage, query type, sample) task.

A generator writes training queries for passages, as in InPars (Bonifacio et al. 2022),
Promptagator (Dai et al. 2022) and CADET's typed queries (Tamber et al. 2025). Subclasses
implement :meth:`Generator.generate`; cleaning and junk filtering of what comes back
(:mod:`twotower.generation.junk`) and writing it (:mod:`twotower.generation.job`) are shared.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from twotower.errors import ConfigError, TwotowerError, check_integer


class GenerationError(TwotowerError):
    """A back-end that could not generate (an endpoint that never answers, a model that fails)."""


@dataclass(frozen=True)
class GenerationTask:
    """One query to write: for passage ``doc_id``, of ``query_type``, the ``sample``-th one
    (0-based) of that passage and type."""

    doc_id: str
    passage: str
    query_type: str
    sample: int = 0

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.doc_id, self.query_type, self.sample)


def task_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from ``seed`` and the parts (doc id, type, sample …), stable across runs,
    processes and batch compositions (Python's ``hash`` is salted per process)."""
    text = "\0".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding settings. The defaults are CADET's (Tamber et al. 2025): temperature 0.8, at
    most 50 new tokens and no nucleus cut (top-p 1); ``top_p`` < 1 samples from the nucleus
    (Holtzman et al. 2020). Temperature 0 decodes greedily."""

    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name}: must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{name}: must be finite, got {value!r}")
        if self.temperature < 0:
            raise ConfigError(
                f"temperature: must be >= 0 (0 decodes greedily), got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")
        check_integer("max_new_tokens", self.max_new_tokens, minimum=1)
        check_integer("seed", self.seed, minimum=0)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(ABC):
    """Writes one raw completion per :class:`GenerationTask`.

    ``kind`` names the back-end (``causal-lm``, ``http``, ``ict``, ``crop``), ``name`` the model
    or endpoint. :meth:`describe` is recorded on every output line, so a file says what wrote
    it. ``generated_tokens`` counts the tokens the back-end generated since it was built (for
    tokens/s). A generator whose queries are spans of the passage by design (ICT, cropping)
    sets ``copies_passage`` so the junk filter does not drop them for it, and ``fixed_types``
    to the query types it writes (one each; a mix of them, ``ict+crop``, writes several).
    """

    kind: str = "generator"
    copies_passage: bool = False
    fixed_types: tuple[str, ...] = ()

    def __init__(
        self, *, name: str, sampling: SamplingSettings | None = None, batch_size: int = 8
    ) -> None:
        check_integer("batch_size", batch_size, minimum=1)
        self.name = name
        self.sampling = sampling if sampling is not None else SamplingSettings()
        self.batch_size = batch_size
        self.generated_tokens = 0

    @abstractmethod
    def generate(self, tasks: Sequence[GenerationTask]) -> list[str]:
        """One raw completion (uncleaned) per task, in task order."""

    def describe(self) -> dict[str, Any]:
        """What wrote a query: back-end, model and the settings that change its output."""
        return {"kind": self.kind, "name": self.name}

    def positive(self, task: GenerationTask, query: str) -> str | None:
        """The positive passage text to train ``query`` on, when it is not the corpus document
        (ICT removes the query's sentence from it); ``None`` otherwise."""
        return None

    def instructions(self, query_type: str) -> list[str]:
        """Prompt texts a completion must not echo (the junk filter's ``prompt_echo``)."""
        return []

    def close(self) -> None:
        """Release what the back-end holds (model weights, connections); nothing by default."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
