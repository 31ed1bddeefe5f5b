"""Evaluation of retrievers on BEIR-format collections with trec_eval metrics."""

from twotower.evaluation.evaluate import EvalResult, evaluate_dual, evaluate_systems
from twotower.evaluation.metrics import DEFAULT_METRICS, evaluate_run

__all__ = ["DEFAULT_METRICS", "EvalResult", "evaluate_dual", "evaluate_run", "evaluate_systems"]
