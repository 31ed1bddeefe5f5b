"""``twotower compare``: systems against a baseline over the same queries, from saved scores.

Per collection (and split, and task), each system's mean of one metric, its difference to the
baseline, the queries it wins and loses, and two paired two-sided tests over queries — the
t-test and the randomisation (sign-flip) test, which Smucker, Allan and Carterette (2007, "A
comparison of statistical significance tests for information retrieval evaluation") found to
agree closely on TREC runs, recommending the randomisation test — with their p-values
Holm-corrected (Holm 1979,
"A simple sequentially rejective multiple test procedure") over the systems compared with the
baseline in that table, when there are several.

Training seeds of one system are spelt ``NAME@SEED`` and pooled into ``NAME``
(:mod:`twotower.evaluation.pooling`). A comparison reads files only: nothing is re-encoded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twotower.errors import ConfigError, did_you_mean
from twotower.evaluation.compare_sources import Scores, load_scores, parse_source
from twotower.evaluation.metrics import parse_metric
from twotower.evaluation.pooling import PooledSystem, TableKey, pool
from twotower.evaluation.significance import PERMUTATIONS, PairedTest, holm, paired_test

DEFAULT_BASELINE = "base"  # the base model of a twotower run's results


@dataclass(frozen=True)
class SystemRow:
    system: PooledSystem
    test: PairedTest | None  # None for the baseline's own row
    t_p_holm: float | None = None
    randomisation_p_holm: float | None = None

    def to_json(self) -> dict[str, Any]:
        test = self.test
        return _finite(
            {
                "system": self.system.name,
                "seeds": list(self.system.seeds),
                "seed_means": list(self.system.seed_means),
                "mean": self.system.mean,
                "std": self.system.std,
                "queries": len(self.system.per_query),
                "difference": test.difference if test else None,
                "wins": test.wins if test else None,
                "losses": test.losses if test else None,
                "t_statistic": test.t_statistic if test else None,
                "t_p_value": test.t_p_value if test else None,
                "t_p_holm": self.t_p_holm,
                "randomisation_p_value": test.randomisation_p_value if test else None,
                "randomisation_p_holm": self.randomisation_p_holm,
                "sources": list(self.system.sources),
            }
        )


@dataclass(frozen=True)
class ComparisonTable:
    collection: str
    split: str
    task: str
    baseline: SystemRow
    rows: list[SystemRow]  # the other systems, in the order the files gave them

    @property
    def title(self) -> str:
        task = "" if self.task == "retrieval" else f", {self.task} task"
        return f"{self.collection} ({self.split}{task})"

    def to_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "split": self.split,
            "task": self.task,
            "baseline": self.baseline.to_json(),
            "systems": [row.to_json() for row in self.rows],
        }


@dataclass(frozen=True)
class Comparison:
    metric: str
    baseline: str
    tables: list[ComparisonTable]
    permutations: int
    seed: int
    sources: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "tests": {
                "t": "paired t-test, two-sided (scipy.stats.ttest_rel)",
                "randomisation": "paired sign-flip randomisation test of the mean difference,"
                " two-sided (scipy.stats.permutation_test)",
                "permutations": self.permutations,
                "seed": self.seed,
                "holm": "Holm 1979 over the systems compared with the baseline in a table",
            },
            "sources": self.sources,
            "tables": [table.to_json() for table in self.tables],
        }


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """NaN and ±inf (a t-test of one query, or of differences all alike) as null, valid JSON."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def choose_baseline(tables: dict[TableKey, dict[str, PooledSystem]], baseline: str | None) -> str:
    """``baseline`` if some table has it; by default the base model, else the first system."""
    names = list(dict.fromkeys(name for systems in tables.values() for name in systems))
    if baseline is None:
        return DEFAULT_BASELINE if DEFAULT_BASELINE in names else names[0]
    if baseline not in names:
        raise ConfigError(
            f"--baseline: no system '{baseline}' in the files (systems: {', '.join(names)})"
            + did_you_mean(baseline, names)
        )
    return baseline


def compare_table(
    key: TableKey,
    systems: dict[str, PooledSystem],
    baseline: str,
    *,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
) -> ComparisonTable:
    """Every system of one table against ``baseline``, the p-values Holm-corrected together."""
    if baseline not in systems:
        raise ConfigError(
            f"--baseline: '{baseline}' has no scores on {key[0]} ({key[1]}, {key[2]});"
            f" systems there: {', '.join(systems)}"
        )
    base = systems[baseline]
    others = [s for name, s in systems.items() if name != baseline]
    tests = [
        paired_test(s.per_query, base.per_query, seed=seed, permutations=permutations)
        for s in others
    ]
    t_holm = holm([t.t_p_value for t in tests])
    random_holm = holm([t.randomisation_p_value for t in tests])
    rows = [
        SystemRow(s, test, t_p, random_p)
        for s, test, t_p, random_p in zip(others, tests, t_holm, random_holm, strict=True)
    ]
    return ComparisonTable(*key, baseline=SystemRow(base, None), rows=rows)


def compare_scores(
    scores: Sequence[Scores],
    *,
    metric: str,
    baseline: str | None = None,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
) -> Comparison:
    """The comparison of already-read scores (see :func:`compare` for files)."""
    tables = pool(scores)
    chosen = choose_baseline(tables, baseline)
    return Comparison(
        metric=metric,
        baseline=chosen,
        tables=[
            compare_table(key, systems, chosen, seed=seed, permutations=permutations)
            for key, systems in tables.items()
        ],
        permutations=permutations,
        seed=seed,
        sources=list(dict.fromkeys(s.source for s in scores)),
    )


def compare(
    sources: Sequence[str | Path],
    *,
    baseline: str | None = None,
    metric: str = "ndcg@10",
    collections: Sequence[str] | None = None,
    split: str = "test",
    data_dir: str | Path | None = None,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
) -> Comparison:
    """Compare the systems of results files and TREC run files (``LABEL=FILE`` names a file's
    system; ``NAME@SEED`` systems are pooled over seeds) against ``baseline``, on ``metric``.

    Run files are scored against the qrels of the one collection in ``collections``; results
    files are kept to ``collections`` if given. ``comparison.to_json()`` and
    :func:`twotower.evaluation.compare_report.markdown_comparison` are the command's outputs.
    """
    if not sources:
        raise ConfigError("compare: give at least one results or run file")
    if permutations < 1:
        raise ConfigError(f"permutations: must be ≥ 1, got {permutations}")
    metric = metric.strip().lower()
    parse_metric(metric)
    scores = load_scores(
        [parse_source(str(s)) for s in sources],
        metric,
        collections=list(collections) if collections else None,
        split=split,
        data_dir=data_dir,
    )
    return compare_scores(
        scores, metric=metric, baseline=baseline, seed=seed, permutations=permutations
    )
