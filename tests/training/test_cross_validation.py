"""The main job's settings are chosen by k-fold cross-validation on SciFact train
(benchmarks/main_job_cv.py): its folds partition the train queries, and it reads no test split."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def cv(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports adapt_selection beside it
    spec = importlib.util.spec_from_file_location(
        "bench_main_job_cv", BENCHMARKS / "main_job_cv.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_main_job_cv", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("k", [2, 3, 5])
def test_the_folds_partition_the_queries(cv, k):
    qids = [f"q{i}" for i in range(809)]
    folds = cv.fold_split(qids, k)
    assert len(folds) == k
    seen = [q for fold in folds for q in fold]
    assert sorted(seen) == sorted(qids), "every query in exactly one fold"
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert cv.fold_split(qids, k) == folds, "the split is seeded"
    assert cv.fold_split(qids, k, seed=1) != folds


def test_the_cross_validation_reads_only_the_train_split():
    """Every collection the script loads is loaded by name with the split "train"."""
    for script in ("main_job_cv.py", "adapt_selection.py"):
        tree = ast.parse((BENCHMARKS / script).read_text())
        loads = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "load_collection"
        ]
        assert loads, f"{script} loads its collection through load_collection"
        for call in loads:
            splits = [a for a in call.args[1:2]] + [
                k.value for k in call.keywords if k.arg == "split"
            ]
            assert [ast.literal_eval(s) for s in splits] == ["train"], ast.unparse(call)
