"""``twotower compare``'s logic: the paired tests against hand computations, Holm's correction,
seeds pooled, and one clear error for each bad input."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from tests.evaluation._results import A, B, results_file
from twotower.errors import ConfigError, InputError
from twotower.evaluation.compare import compare
from twotower.evaluation.compare_report import markdown_comparison
from twotower.evaluation.pooling import split_seed
from twotower.evaluation.significance import holm, paired_test


def test_the_t_test_is_the_hand_computed_one():
    # mean difference 0.24, sample sd sqrt(0.192 / 4), so t = 0.24 / (sd / sqrt(5)) = sqrt(6)
    test = paired_test(A, B)
    assert test.t_statistic == pytest.approx(math.sqrt(6))
    assert test.t_p_value == pytest.approx(2 * stats.t.sf(math.sqrt(6), df=4))
    assert test.t_p_value == pytest.approx(
        stats.ttest_rel(list(A.values()), list(B.values())).pvalue
    )
    assert (test.difference, test.wins, test.losses) == (pytest.approx(0.24), 4, 1)


def test_the_randomisation_p_is_the_exact_count_of_sign_flips():
    # |Σ±d| ≥ 1.2 for 4 of the 32 sign patterns (flip nothing or the 0.1; and their negations)
    test = paired_test(A, B)
    assert test.randomisation_p_value == pytest.approx(4 / 32)
    d = np.array([A[q] - B[q] for q in A])
    flips = np.array(list(itertools.product((1, -1), repeat=len(d))))
    means = np.abs((flips * d).mean(axis=1))
    assert test.randomisation_p_value == pytest.approx(np.mean(means >= abs(d.mean()) - 1e-12))


def test_the_sampled_randomisation_p_is_near_the_exact_one_and_repeatable():
    rng = np.random.default_rng(8)
    x, y = rng.uniform(0, 1, 20), rng.uniform(0, 1, 20) * 0.9
    a = {str(i): float(v) for i, v in enumerate(x)}
    b = {str(i): float(v) for i, v in enumerate(y)}
    sampled = paired_test(a, b, seed=3, permutations=10_000).randomisation_p_value
    assert paired_test(a, b, seed=3, permutations=10_000).randomisation_p_value == sampled
    # all 2^20 sign flips, independently of scipy
    d = x - y
    bits = (np.arange(2**20)[:, None] >> np.arange(20)) & 1
    means = np.abs(((1 - 2 * bits) * d).mean(axis=1))
    exact = float(np.mean(means >= abs(d.mean()) - 1e-12))
    assert exact == pytest.approx(0.19, abs=0.01)  # not at an edge, where any p agrees
    assert sampled == pytest.approx(exact, abs=0.02)  # four standard errors of 10,000 draws


def test_holm_on_known_p_values():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 → monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([0.2]) == [0.2]  # one test: nothing to correct
    corrected = holm([math.nan, 0.01])
    assert math.isnan(corrected[0]) and corrected[1] == pytest.approx(0.02)
    assert holm([]) == []


def test_a_results_file_compares_every_system_with_its_base_model(tmp_path):
    c = {"1": 0.1, "2": 0.5, "3": 0.4, "4": 0.3, "5": 0.2}
    path = results_file(tmp_path / "results.json", {"bm25": B, "base": c, "trained": A})
    comparison = compare([path])
    assert comparison.baseline == "base" and comparison.metric == "ndcg@10"
    (table,) = comparison.tables
    assert (table.collection, table.split, table.task) == ("scifact", "test", "retrieval")
    assert [row.system.name for row in table.rows] == ["bm25", "trained"]
    tests = [paired_test(B, c), paired_test(A, c)]
    for row, expected in zip(table.rows, tests, strict=True):
        assert row.test == expected
    assert [row.t_p_holm for row in table.rows] == holm([t.t_p_value for t in tests])
    assert [row.randomisation_p_holm for row in table.rows] == holm(
        [t.randomisation_p_value for t in tests]
    )
    assert table.baseline.system.mean == pytest.approx(0.3)
    # without a base model the first system is the baseline; --baseline picks another
    no_base = results_file(tmp_path / "b.json", {"bm25": B, "trained": A})
    assert compare([no_base]).baseline == "bm25"
    assert compare([tmp_path]).tables == comparison.tables  # a run folder: its results.json
    assert compare([path], baseline="trained").tables[0].rows[0].test == paired_test(B, A)


def test_seeds_are_pooled_into_mean_and_std_and_tested_on_seed_averaged_scores(tmp_path):
    seeds = [
        {q: v + shift for q, v in A.items()} for shift in (0.0, 0.05, -0.02)
    ]  # seed means 0.54, 0.59, 0.52
    files = [
        results_file(tmp_path / f"s{i}" / "results.json", {"base": B, "trained": values})
        for i, values in enumerate(seeds, start=1)
    ]
    comparison = compare([f"mnrl@{i}={f}" for i, f in enumerate(files, start=1)])
    (table,) = comparison.tables
    assert table.baseline.system.name == "base" and table.baseline.system.seeds == ()
    (row,) = table.rows
    assert row.system.name == "mnrl" and row.system.seeds == ("1", "2", "3")
    assert row.system.mean == pytest.approx(np.mean([0.54, 0.59, 0.52]))
    assert row.system.std == pytest.approx(np.std([0.54, 0.59, 0.52], ddof=1))
    averaged = {q: np.mean([s[q] for s in seeds]) for q in A}
    assert row.system.per_query == pytest.approx(averaged)
    assert row.test == paired_test(row.system.per_query, B)
    assert row.test.queries == 5  # the test is over queries, not queries × seeds
    # the same pooling from one file naming its systems NAME@SEED
    one = results_file(
        tmp_path / "one.json", {"base": B, **{f"mnrl@{i}": s for i, s in enumerate(seeds)}}
    )
    assert compare([one]).tables[0].rows[0].system.mean == pytest.approx(row.system.mean)


def test_split_seed():
    assert split_seed("mnrl@2") == ("mnrl", "2")
    assert split_seed("mnrl-dual@seed.3") == ("mnrl-dual", "seed.3")
    assert split_seed("bm25+m (rrf)") == ("bm25+m (rrf)", None)
    assert split_seed("@3") == ("@3", None)


def test_a_file_with_no_per_query_scores_is_one_line_naming_file_and_field(tmp_path):
    path = results_file(tmp_path / "results.json", {"base": B, "trained": A})
    payload = json.loads(path.read_text())
    del payload["results"][1]["per_query_ndcg@10"]
    path.write_text(json.dumps(payload))
    with pytest.raises(InputError) as caught:
        compare([path])
    message = str(caught.value)
    assert message.startswith(f"{path} field 'results[1].per_query_ndcg@10': no per-query scores")
    assert "system 'trained'" in message and "\n" not in message
    with pytest.raises(InputError, match=r"per_query_recall@100'.*ndcg@10 only"):
        compare([results_file(tmp_path / "r.json", {"base": B})], metric="recall@100")


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"recipe": {}}, "results"),
        ({"results": [{"system": "base"}]}, "results[0].data"),
        (
            {"results": [{"system": "b", "data": "x", "per_query_ndcg@10": {"1": "high"}}]},
            "results[0].per_query_ndcg@10",
        ),
    ],
)
def test_malformed_results_files_name_the_field(tmp_path, payload, field):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(InputError, match=re.escape(f"field '{field}'")):
        compare([path])


def test_unknown_system_metric_collection_and_file(tmp_path):
    path = results_file(tmp_path / "results.json", {"base": B, "trained": A})
    with pytest.raises(ConfigError, match=r"no system 'trainde'.*did you mean 'trained'"):
        compare([path], baseline="trainde")
    with pytest.raises(ConfigError, match="unknown metric 'ndcg10'"):
        compare([path], metric="ndcg10")
    with pytest.raises(ConfigError, match=r"--collections: no scores for cisi .*hold scifact"):
        compare([path], collections=["cisi"])
    with pytest.raises(InputError, match="missing.json: no such file"):
        compare([tmp_path / "missing.json"])


def test_the_same_system_read_twice_is_kept_once_only_if_its_scores_agree(tmp_path):
    first = results_file(tmp_path / "a.json", {"base": B, "trained": A})
    second = results_file(tmp_path / "b.json", {"base": B, "trained": A})
    assert len(compare([first, f"other={second}"]).tables[0].rows) == 2  # trained, other
    changed = results_file(tmp_path / "c.json", {"base": {**B, "1": 0.9}, "trained": A})
    with pytest.raises(InputError, match=r"system 'base' on scifact has other per-query scores"):
        compare([first, f"other={changed}"])
    with pytest.raises(ConfigError, match="both with and without a seed"):
        compare([results_file(tmp_path / "d.json", {"base": B, "m": A, "m@1": A})])


def test_collections_are_tables_and_a_filter(tmp_path):
    path = tmp_path / "results.json"
    results_file(path, {"base": B, "trained": A}, data="/d/cisi")
    cisi = json.loads(path.read_text())["results"]
    results_file(path, {"base": A, "trained": B}, data="/d/scifact")
    both = {"results": json.loads(path.read_text())["results"] + cisi}
    path.write_text(json.dumps(both))
    assert [t.collection for t in compare([path]).tables] == ["scifact", "cisi"]
    assert [t.collection for t in compare([path], collections=["cisi"]).tables] == ["cisi"]


def test_run_files_are_scored_against_the_named_collection(tiny_collection, tmp_path):
    good, bad = tmp_path / "good.trec", tmp_path / "bad.trec"
    # q1 → d1, q2 → d3 then d4, q3 → d6 (qrels of the tiny collection); bad misses q1 and q3
    good.write_text("q1 Q0 d1 1 3.0 t\nq2 Q0 d3 1 2.0 t\nq2 Q0 d4 2 1.0 t\nq3 Q0 d6 1 1.0 t\n")
    bad.write_text("q1 Q0 d2 1 3.0 t\nq2 Q0 d3 1 2.0 t\nq3 Q0 d5 1 1.0 t\n")
    comparison = compare([bad, good], collections=[str(tiny_collection)])
    (table,) = comparison.tables
    assert comparison.baseline == "bad" and table.collection == "tiny"
    assert table.baseline.system.per_query["q1"] == 0.0
    assert table.rows[0].system.name == "good" and table.rows[0].system.mean == pytest.approx(1.0)
    assert (table.rows[0].test.wins, table.rows[0].test.losses) == (3, 0)  # q2: d4 missing in bad
    labelled = compare([bad, f"mine={good}"], collections=[str(tiny_collection)])
    assert labelled.tables[0].rows[0].system.name == "mine"
    with pytest.raises(ConfigError, match="a run file is scored against one collection"):
        compare([good])
    other = tmp_path / "other.trec"
    other.write_text("x1 Q0 d1 1 1.0 t\n")
    with pytest.raises(InputError, match="none of its 1 query ids is a judged query of tiny"):
        compare([other], collections=[str(tiny_collection)])


def test_json_and_markdown_forms(tmp_path):
    seeds = [{q: v + s for q, v in A.items()} for s in (0.0, 0.1)]
    path = results_file(
        tmp_path / "results.json", {"base": B, "bm25": B, "m@1": seeds[0], "m@2": seeds[1]}
    )
    comparison = compare([path])
    payload = comparison.to_json()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    systems = payload["tables"][0]["systems"]
    assert [s["system"] for s in systems] == ["bm25", "m"]
    assert systems[0]["t_statistic"] == 0.0 and systems[0]["t_p_value"] == 1.0  # identical
    assert systems[1]["seeds"] == ["1", "2"] and systems[1]["std"] == pytest.approx(
        0.1 / math.sqrt(2)
    )
    markdown = markdown_comparison(comparison)
    assert "### scifact (test): ndcg@10 against base, 5 queries" in markdown
    assert "| m | 2 | 0.5900 ± 0.0707 | +0.2900 | 4/1 |" in markdown
    assert "p (rand., Holm)" in markdown and "Holm 1979" in markdown


def test_twotower_compare_is_the_library_function():
    import twotower
    from twotower.evaluation.compare import Comparison

    assert twotower.compare is compare and twotower.Comparison is Comparison
