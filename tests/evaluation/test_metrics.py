import math

import pytest

from twotower.errors import ConfigError
from twotower.evaluation.metrics import evaluate_run, parse_metric
from twotower.retrieval.fusion import linear_fusion, rrf_fusion

QRELS = {"q1": {"a": 1, "b": 0}, "q2": {"c": 2, "d": 1}}


def test_hand_computed_values():
    run = {"q1": {"x": 3.0, "a": 2.0, "b": 1.0}, "q2": {"d": 2.0, "c": 1.0}}
    means, per_query = evaluate_run(run, QRELS, ["ndcg@10", "mrr@10", "recall@1", "map@100"])
    assert per_query["q1"]["mrr@10"] == pytest.approx(0.5)
    assert per_query["q1"]["ndcg@10"] == pytest.approx(1 / math.log2(3))
    # graded: ideal order c (gain 3 in trec_eval's linear form: rel), d
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert per_query["q2"]["ndcg@10"] == pytest.approx(
        (1 / math.log2(2) + 2 / math.log2(3)) / ideal
    )
    assert per_query["q2"]["recall@1"] == pytest.approx(0.5)
    assert means["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)


def test_mrr_is_cut_at_k():
    run = {"q1": {f"x{i}": 100.0 - i for i in range(10)} | {"a": 1.0}, "q2": {"c": 1.0}}
    _, per_query = evaluate_run(run, QRELS, ["mrr@10", "mrr@20"])
    assert per_query["q1"]["mrr@10"] == 0.0
    assert per_query["q1"]["mrr@20"] == pytest.approx(1 / 11)


def test_judged_queries_missing_from_run_score_zero():
    means, per_query = evaluate_run({"q2": {"c": 1.0}}, QRELS, ["ndcg@10"])
    assert per_query["q1"]["ndcg@10"] == 0.0
    assert means["ndcg@10"] == pytest.approx(per_query["q2"]["ndcg@10"] / 2)


def test_unjudged_queries_in_run_are_ignored():
    run = {"q1": {"a": 1.0}, "q2": {"c": 1.0, "d": 0.5}, "q9": {"a": 1.0}}
    means, per_query = evaluate_run(run, QRELS, ["ndcg@10"])
    assert set(per_query) == {"q1", "q2"} and means["ndcg@10"] == pytest.approx(1.0)


def test_bad_metric_name():
    with pytest.raises(ConfigError, match="unknown metric 'ndcg10'"):
        parse_metric("ndcg10")


def test_linear_fusion_min_max():
    fused = linear_fusion({"q": {"a": 10.0, "b": 0.0}}, {"q": {"b": 0.9, "c": 0.1}}, alpha=0.5)
    assert fused["q"] == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})


def test_rrf():
    fused = rrf_fusion({"q": {"a": 2.0, "b": 1.0}}, {"q": {"b": 5.0}}, k_rrf=60)
    assert fused["q"]["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert list(fused["q"]) == ["b", "a"]
