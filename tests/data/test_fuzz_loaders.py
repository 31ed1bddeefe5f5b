"""Fuzzed input files: every loader either loads a mutated file or stops with a TwotowerError
naming that file (and a line inside it, when it gives one) — never another exception.

Mutations of valid files: random bytes inserted, bytes deleted or replaced, lines duplicated,
swapped or cut short, a byte-order mark. Derandomised, so CI sees the same cases every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import DOCS, QRELS, QUERIES, write_collection
from twotower.data import (
    Corpus,
    load_collection,
    load_corpus,
    load_qrels,
    load_queries,
    load_synthetic_queries,
)
from twotower.errors import TwotowerError
from twotower.negatives import NegativesTable, read_negatives, write_negatives
from twotower.teachers import read_scores
from twotower.training.examples import examples_from_jsonl
from twotower.training.recipe import load_recipe

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def mutated(draw, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(
                ["insert", "delete", "replace", "duplicate_line", "swap_lines", "truncate", "bom"]
            )
        )
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "insert":
            data[position:position] = draw(
                st.binary(min_size=1, max_size=6)
                | st.sampled_from(
                    [
                        b"\t",
                        b"\n",
                        b'"',
                        b"{",
                        b"}",
                        b",",
                        b":",
                        b"\xff",
                        b"\xc3",
                        b" null",
                        b"\r\n",
                        b"\x00",
                    ]
                )
            )
        elif kind == "delete" and data:
            del data[position : position + draw(st.integers(1, 12))]
        elif kind == "replace" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind in ("duplicate_line", "swap_lines"):
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate_line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
        elif kind == "truncate":
            del data[position:]
        elif kind == "bom":
            data[0:0] = b"\xef\xbb\xbf"
    return bytes(data)


def check(path: Path, content: bytes, load: Callable[[Path], object]) -> None:
    path.write_bytes(content)
    try:
        load(path)
    except TwotowerError as exc:
        message = str(exc)
        assert str(path) in message, f"error does not name the file: {message}"
        line = getattr(exc, "line", None)
        if line is not None:
            assert 1 <= line <= content.count(b"\n") + 1, f"line {line} outside the file: {message}"
    # anything else (KeyError, UnicodeDecodeError, …) fails the test with its traceback


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


CORPUS = jsonl(DOCS)
QUERIES_FILE = jsonl(QUERIES)
NEGATIVES = jsonl(
    [
        {
            "query_id": "q1",
            "positive_ids": ["d1"],
            "negative_ids": ["d2", "d3"],
            "negative_ranks": [2, 5],
        },
        {"query_id": "q2", "positive_ids": ["d3", "d4"], "negative_ids": ["d1"]},
    ]
)
SCORES = jsonl(
    [
        {"query_id": "q1", "doc_id": "d1", "score": 2.5},
        {"query_id": "q1", "doc_id": "d2", "score": -1},
        {"query_id": "q2", "doc_id": "d3", "score": 0.25},
    ]
)
PAIRS = jsonl(
    [
        {"query": "cats", "positive": "Cats purr.", "negatives": ["Dogs bark."]},
        {"query": "tea", "positive": "Green tea.", "query_id": "t"},
    ]
)
SYNTHETIC = jsonl(
    [
        {"query": "purring pets", "doc_id": "d1", "type": "question"},
        {"query": "coffee seeds", "doc_id": "d6", "query_id": "g2"},
    ]
)
RECIPE = b"""# fuzzed recipe
name: fuzz
model: {name: all-MiniLM-L6-v2, towers: shared}
train: {data: scifact, split: train}
negatives: {source: bm25, count: 2, rank_window: [10, 100]}
loss:
  - {loss: contrastive, preset: mnrl, temperature: 0.05}
optim: {learning_rate: 5.0e-5, batch_size: 32, epochs: 1}
eval: {collections: [scifact, cisi]}
"""


@FUZZ
@given(content=mutated(CORPUS))
def test_corpus(tmp_path, content):
    check(tmp_path / "corpus.jsonl", content, Corpus.load)


@FUZZ
@given(content=mutated(QUERIES_FILE))
def test_queries(tmp_path, content):
    check(tmp_path / "queries.jsonl", content, load_queries)


@FUZZ
@given(content=mutated(QRELS.encode()))
def test_qrels(tmp_path, content):
    check(tmp_path / "test.tsv", content, load_qrels)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return load_collection(write_collection(tmp_path_factory.mktemp("fuzz") / "c"))


@FUZZ
@given(content=mutated(NEGATIVES))
def test_negatives(tmp_path, collection, content):
    check(tmp_path / "negatives.jsonl", content, lambda p: read_negatives(p, collection))


@FUZZ
@given(content=mutated(SCORES))
def test_teacher_scores(tmp_path, collection, content):
    check(tmp_path / "scores.jsonl", content, lambda p: read_scores(p, collection))


@FUZZ
@given(content=mutated(PAIRS))
def test_training_pairs(tmp_path, content):
    check(tmp_path / "pairs.jsonl", content, examples_from_jsonl)


@FUZZ
@given(content=mutated(SYNTHETIC))
def test_synthetic_queries(tmp_path, collection, content):
    corpus_only = load_corpus(collection.path)
    check(tmp_path / "synthetic.jsonl", content, lambda p: load_synthetic_queries(p, corpus_only))


@FUZZ
@given(content=mutated(RECIPE))
def test_recipe(tmp_path, content):
    check(tmp_path / "fuzz.yaml", content, load_recipe)


def test_the_unmutated_files_load(tmp_path, collection):
    """The seeds are valid, so a failure above is the mutation's doing."""
    assert len(Corpus.load(_write(tmp_path / "corpus.jsonl", CORPUS))) == len(DOCS)
    assert len(load_queries(_write(tmp_path / "queries.jsonl", QUERIES_FILE))) == len(QUERIES)
    assert len(read_negatives(_write(tmp_path / "n.jsonl", NEGATIVES), collection)) == 2
    assert read_scores(_write(tmp_path / "s.jsonl", SCORES), collection)["q1"] == {
        "d1": 2.5,
        "d2": -1.0,
    }
    assert len(examples_from_jsonl(_write(tmp_path / "p.jsonl", PAIRS))) == 2
    assert load_synthetic_queries(
        _write(tmp_path / "y.jsonl", SYNTHETIC), load_corpus(collection.path)
    )[1] == {"question": 1, "untyped": 1}
    assert load_recipe(_write(tmp_path / "fuzz.yaml", RECIPE)).negatives.count == 2
    table = NegativesTable({"q1": ["d2"]}, positives={"q1": ["d1"]})
    write_negatives(tmp_path / "w.jsonl", table)
    assert read_negatives(tmp_path / "w.jsonl").negatives == {"q1": ["d2"]}


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path
