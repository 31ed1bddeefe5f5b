"""TREC run files read into runs, every error naming the file and line."""

from __future__ import annotations

import pytest

from twotower.data.run_file import read_run
from twotower.errors import InputError


def test_a_trec_run_is_read_by_score_with_or_without_its_tag(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 d1 1 2.5 bm25\n\nq1\tQ0\td2\t2\t-1e-3\tbm25\nq2 Q0 d1 1 7\n")
    assert read_run(path) == {"q1": {"d1": 2.5, "d2": -0.001}, "q2": {"d1": 7.0}}


@pytest.mark.parametrize(
    "text, message",
    [
        ("q1 Q0 d1 1\n", "run.trec:1: expected 6 columns"),
        ("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 high t\n", "run.trec:2 field 'score': score 'high'"),
        ("q1 Q0 d1 1 nan t\n", "run.trec:1 field 'score': score 'nan' is not a finite number"),
        ("q1 Q0 d1 1 2 t\nq1 Q0 d1 2 1 t\n", "run.trec:2: document 'd1' ranked twice"),
        ("\n", "run.trec: no ranked documents"),
    ],
)
def test_bad_run_files_are_one_line(tmp_path, text, message):
    path = tmp_path / "run.trec"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_run(path)
