"""The one check of a linear fusion's weight, wherever a fusion is weighted."""

from __future__ import annotations

import pytest

from twotower.data import load_collection
from twotower.errors import ConfigError
from twotower.evaluation.evaluate import evaluate_systems
from twotower.negatives.retrievers import FusionRetriever
from twotower.retrieval.fusion import linear_fusion
from twotower.teachers import FusionTeacher, build_teacher, parse_teacher_spec


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_0_1_is_one_config_error_before_any_work(alpha, tiny_collection):
    collection = load_collection(tiny_collection)
    run = {"q1": {"d1": 2.0, "d2": 1.0}}
    attempts = {
        "linear_fusion": lambda: linear_fusion(run, run, alpha),
        "evaluation": lambda: evaluate_systems(collection, bm25=True, fusion="linear", alpha=alpha),
        "mining retriever": lambda: FusionRetriever(None, alpha=alpha),  # fails before the model
        "teacher": lambda: FusionTeacher(collection.corpus, "no-such-model", alpha=alpha),
        "teacher spec": lambda: build_teacher(
            *parse_teacher_spec("fusion:no-such-model"), collection=collection, alpha=alpha
        ),
    }
    for where, attempt in attempts.items():
        with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\]"):
            attempt()
            pytest.fail(where)


def test_alpha_at_the_bounds_weights_one_run_only():
    first, second = {"q": {"a": 2.0, "b": 1.0}}, {"q": {"a": 1.0, "b": 2.0}}
    assert linear_fusion(first, second, 1.0) == {"q": {"a": 1.0, "b": 0.0}}
    assert linear_fusion(first, second, 0.0) == {"q": {"b": 1.0, "a": 0.0}}
