"""trec_eval metrics through pytrec_eval, over judged queries only."""

from __future__ import annotations

import re

import numpy as np
import pytrec_eval

from twotower.data.beir import Qrels
from twotower.errors import ConfigError
from twotower.retrieval import Run

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "map@100", "recall@10", "recall@100")

# Our name → trec_eval measure family; the cut-off is appended as ``_k``.
_FAMILIES = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P", "p": "P"}


def parse_metric(name: str) -> tuple[str, int]:
    match = re.fullmatch(r"(ndcg|map|recall|precision|p|mrr)@(\d+)", name.strip().lower())
    if not match:
        raise ConfigError(
            f"unknown metric '{name}': use ndcg@k, mrr@k, map@k, recall@k or precision@k (e.g. ndcg@10)"
        )
    return match.group(1), int(match.group(2))


def max_cutoff(metrics: tuple[str, ...] | list[str]) -> int:
    return max(parse_metric(m)[1] for m in metrics)


def evaluate_run(
    run: Run, qrels: Qrels, metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean and per-query values of ``metrics``; queries judged but not retrieved score 0.

    MRR@k is trec_eval's ``recip_rank`` on the run cut to its top k (trec_eval has no cut
    for it); ties are broken as trec_eval does.
    """
    parsed = {m: parse_metric(m) for m in metrics}
    judged = {q: docs for q, docs in qrels.items() if docs}
    filled_run = {q: run.get(q) or {} for q in judged}
    plain = {f"{_FAMILIES[f]}_{k}" for f, k in parsed.values() if f != "mrr"}
    per_query: dict[str, dict[str, float]] = {q: {} for q in judged}
    if plain:
        _measure(judged, filled_run, plain, per_query, parsed, lambda f: f != "mrr")
    for cutoff in sorted({k for f, k in parsed.values() if f == "mrr"}):
        cut = {
            q: dict(sorted(docs.items(), key=lambda item: (-item[1], item[0]))[:cutoff])
            for q, docs in filled_run.items()
        }
        _measure(
            judged,
            cut,
            {"recip_rank"},
            per_query,
            {m: v for m, v in parsed.items() if v == ("mrr", cutoff)},
            None,
        )
    means = {
        m: float(np.mean([per_query[q][m] for q in judged])) if judged else 0.0 for m in metrics
    }
    return means, per_query


def _measure(qrels, run, measures, per_query, parsed, keep) -> None:
    # pytrec_eval skips queries with an empty ranking, so give them a dummy that cannot match.
    safe_run = {q: docs if docs else {"\0none": 0.0} for q, docs in run.items()}
    results = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(safe_run)
    for name, (family, cutoff) in parsed.items():
        if keep is not None and not keep(family):
            continue
        key = "recip_rank" if family == "mrr" else f"{_FAMILIES[family]}_{cutoff}"
        for query_id in per_query:
            per_query[query_id][name] = float(results.get(query_id, {}).get(key, 0.0))
