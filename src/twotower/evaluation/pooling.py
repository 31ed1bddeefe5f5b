"""Training seeds of one system pooled: ``NAME@SEED`` systems become one ``NAME``.

A pooled system's mean is the mean of its seeds' means and its spread their sample standard
deviation; its per-query values are averaged over the seeds, so the paired tests run over
queries of the seed-averaged scores (a seed's luck is averaged out before the test instead of
counted as more queries). Each table (collection, split, task) is pooled on its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twotower.errors import ConfigError, InputError
from twotower.evaluation.compare_sources import Scores

_SEED = re.compile(r"(?P<name>.+)@(?P<seed>[\w.-]+)")


def split_seed(system: str) -> tuple[str, str | None]:
    """``("mnrl", "2")`` for ``"mnrl@2"``; ``(system, None)`` for a name with no seed."""
    match = _SEED.fullmatch(system)
    return (match["name"], match["seed"]) if match else (system, None)


@dataclass(frozen=True)
class PooledSystem:
    """A system over its seeds (one entry, no seed, for an unseeded system)."""

    name: str
    seeds: tuple[str, ...]
    seed_means: tuple[float, ...]
    per_query: dict[str, float]  # averaged over the seeds; a query a seed lacks counts 0
    sources: tuple[str, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.seed_means))

    @property
    def std(self) -> float | None:
        """Sample standard deviation of the seeds' means; None for fewer than two seeds."""
        return float(np.std(self.seed_means, ddof=1)) if len(self.seed_means) > 1 else None


TableKey = tuple[str, str, str]  # collection, split, task


def pool(scores: Sequence[Scores]) -> dict[TableKey, dict[str, PooledSystem]]:
    """Systems per table, ``NAME@SEED`` pooled into ``NAME``; the same system read twice (the
    base model in each seed's results) is kept once if its scores agree."""
    entries: dict[TableKey, dict[str, Scores]] = {}
    for s in scores:
        held = entries.setdefault((s.collection, s.split, s.task), {})
        first = held.get(s.system)
        if first is None:
            held[s.system] = s
        elif not _same(first.per_query, s.per_query):
            raise InputError(
                f"system '{s.system}' on {s.collection} has other per-query scores than in"
                f" {first.source}: compare the two files apart, or give the file's trained system"
                " a name of its own (LABEL=FILE)",
                path=s.source,
            )
    return {key: _pooled(held) for key, held in entries.items()}


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[q], b[q], abs_tol=1e-9) for q in a)


def _pooled(held: dict[str, Scores]) -> dict[str, PooledSystem]:
    groups: dict[str, list[tuple[str | None, Scores]]] = {}
    for system, s in held.items():
        name, seed = split_seed(system)
        groups.setdefault(name, []).append((seed, s))
    out = {}
    for name, members in groups.items():
        seeds = [seed for seed, _ in members]
        if None in seeds and len(members) > 1:
            raise ConfigError(
                f"system '{name}' is given both with and without a seed"
                f" ({', '.join(s.system for _, s in members)}): name every seed NAME@SEED"
            )
        queries = sorted({q for _, s in members for q in s.per_query})
        values = np.array([[s.per_query.get(q, 0.0) for q in queries] for _, s in members])
        out[name] = PooledSystem(
            name=name,
            seeds=tuple(seed for seed in seeds if seed is not None),
            seed_means=tuple(float(np.mean(list(s.per_query.values()))) for _, s in members),
            per_query=dict(zip(queries, map(float, values.mean(axis=0)), strict=True)),
            sources=tuple(dict.fromkeys(s.source for _, s in members)),
        )
    return out
