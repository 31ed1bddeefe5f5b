"""Teachers: cross-encoder, bi-encoder and fusion scores, the score cache, normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.teachers._tiny_cross_encoder import build_tiny_cross_encoder
from twotower.data import load_collection
from twotower.errors import ConfigError, InputError
from twotower.models import Encoder
from twotower.retrieval.bm25 import BM25
from twotower.retrieval.dense import exact_search, to_run
from twotower.retrieval.fusion import linear_fusion
from twotower.teachers import (
    BiEncoderTeacher,
    CrossEncoderTeacher,
    FusionTeacher,
    build_teacher,
    keep_queries,
    min_max_top,
    normalize_percentile,
    normalize_scores,
    parse_teacher_spec,
    percentile_bounds,
    read_scores,
    score_cache_dir,
)
from twotower.teachers.normalize import weak_query_thresholds
from twotower.training.pipeline import prepare_rows
from twotower.training.recipe import load_recipe


def all_pairs(collection):
    qs, ds = [], []
    for qid in collection.judged_query_ids:
        for text in collection.corpus.texts:
            qs.append(collection.queries[qid])
            ds.append(text)
    return qs, ds


# ---------------------------------------------------------------- cross-encoder
def test_cross_encoder_scores_equal_predict_and_hit_the_cache(
    tiny_cross_encoder, tiny_collection, monkeypatch
):
    from sentence_transformers import CrossEncoder

    collection = load_collection(tiny_collection)
    qs, ds = all_pairs(collection)
    qs, ds = qs + qs[:3], ds + ds[:3]  # duplicates are scored once
    reference = CrossEncoder(str(tiny_cross_encoder))
    pairs = [[q, d] for q, d in zip(qs, ds, strict=True)]

    teacher = CrossEncoderTeacher(str(tiny_cross_encoder), batch_size=4, show_progress=False)
    logits = teacher.score_pairs(qs, ds)
    assert logits.dtype == np.float32 and logits.shape == (len(qs),)
    np.testing.assert_allclose(
        logits, reference.predict(pairs, activation_fn=torch.nn.Identity()), rtol=1e-5, atol=1e-6
    )
    assert teacher.last_stats.unique == len(qs) - 3 and teacher.last_stats.computed == len(qs) - 3
    assert len(list(score_cache_dir().glob("cross_encoder-*.sqlite"))) == 1

    as_model = CrossEncoderTeacher(str(tiny_cross_encoder), activation="model", show_progress=False)
    np.testing.assert_allclose(
        as_model.score_pairs(qs, ds), reference.predict(pairs), rtol=1e-5, atol=1e-6
    )
    assert as_model.fingerprint != teacher.fingerprint  # the activation is part of the key

    # A fresh teacher on the same weights: everything comes from the cache, the model is not called.
    again = CrossEncoderTeacher(str(tiny_cross_encoder), show_progress=False)
    calls = []
    monkeypatch.setattr(again.model, "predict", lambda *a, **k: calls.append(1))
    np.testing.assert_array_equal(again.score_pairs(qs, ds), logits)
    assert calls == [] and again.last_stats.all_cached and again.last_stats.cached == len(qs) - 3

    # Without the cache, the model runs again.
    uncached = CrossEncoderTeacher(str(tiny_cross_encoder), use_cache=False, show_progress=False)
    np.testing.assert_allclose(uncached.score_pairs(qs[:2], ds[:2]), logits[:2], rtol=1e-5)
    assert uncached.last_stats.computed == 2


def test_cross_encoder_needs_one_label(tmp_path):
    folder = build_tiny_cross_encoder(tmp_path / "two", num_labels=2)
    with pytest.raises(ConfigError, match="2 output labels"):
        CrossEncoderTeacher(str(folder))


def test_empty_and_misaligned_inputs(tiny_cross_encoder):
    teacher = CrossEncoderTeacher(str(tiny_cross_encoder), show_progress=False)
    assert teacher.score_pairs([], []).shape == (0,)
    with pytest.raises(ValueError, match="2 query texts but 1"):
        teacher.score_pairs(["a", "b"], ["c"])


# ---------------------------------------------------------------- bi-encoder
def test_bi_encoder_teacher_is_cosine_of_encoder_embeddings(tiny_model, tiny_collection):
    collection = load_collection(tiny_collection)
    qs, ds = all_pairs(collection)
    encoder = Encoder.from_name(str(tiny_model), show_progress=False)
    teacher = BiEncoderTeacher(encoder, show_progress=False)
    expected = (encoder.encode_queries(qs) * encoder.encode_documents(ds)).sum(axis=1)
    np.testing.assert_allclose(teacher.score_pairs(qs, ds), expected, rtol=1e-5, atol=1e-6)
    assert teacher.fingerprint == encoder.fingerprint
    np.testing.assert_allclose(
        BiEncoderTeacher(str(tiny_model), show_progress=False).score_pairs(qs, ds),
        expected,
        rtol=1e-5,
        atol=1e-6,
    )


# ---------------------------------------------------------------- fusion
def test_fusion_teacher_ranks_the_answer_first_and_matches_linear_fusion(
    tiny_model, tiny_collection
):
    collection = load_collection(tiny_collection)
    corpus = collection.corpus
    # fp32: bf16 rounding differs with batch composition, and this compares to 1e-5.
    encoder = Encoder.from_name(str(tiny_model), show_progress=False, precision="fp32")
    alpha = 0.7
    teacher = FusionTeacher(corpus, encoder, alpha=alpha, show_progress=False)
    qids = collection.judged_query_ids
    qs, ds = all_pairs(collection)
    scores = teacher.score_pairs(qs, ds).reshape(len(qids), len(corpus))
    assert scores.min() >= 0.0 and scores.max() <= 1.0 + 1e-6
    for row, qid in enumerate(qids):
        assert corpus.ids[int(np.argmax(scores[row]))] in collection.positives(qid)

    # The same numbers as the evaluation's linear fusion of the two runs (depth 100).
    bm25 = (
        BM25().index(corpus.ids, corpus.texts).run(qids, [collection.queries[q] for q in qids], 100)
    )
    d_scores, d_idx = exact_search(
        encoder.encode_queries([collection.queries[q] for q in qids]),
        encoder.encode_documents(corpus.texts),
        100,
    )
    fused = linear_fusion(bm25, to_run(qids, corpus.ids, d_scores, d_idx), alpha)
    for row, qid in enumerate(qids):
        for doc_id, value in fused[qid].items():
            assert scores[row, corpus.index[doc_id]] == pytest.approx(value, abs=1e-5)


def test_fusion_teacher_scores_documents_of_its_corpus_only(tiny_model, tiny_collection):
    collection = load_collection(tiny_collection)
    teacher = FusionTeacher(collection.corpus, str(tiny_model), show_progress=False)
    with pytest.raises(InputError, match="documents of its corpus only"):
        teacher.score_pairs(["cats"], ["a text that is not in the corpus"])


def test_mining_then_the_fusion_teacher_encode_the_corpus_once(
    tiny_model, train_collection, tmp_path, monkeypatch
):
    # bf16 wherever "auto" decides, so the retriever's and the teacher's precision must agree.
    monkeypatch.setattr("twotower.models.encoder.bf16_supported", lambda device: True)
    encoded: list[int] = []
    encode = Encoder.encode

    def counting(self, texts, task="document", **options):
        if task == "document":
            encoded.append(len(texts))
        return encode(self, texts, task=task, **options)

    monkeypatch.setattr(Encoder, "encode", counting)
    recipe = tmp_path / "listwise.yaml"
    recipe.write_text(f"""model: {{name: {tiny_model}}}
train: {{data: {train_collection}, split: train}}
negatives: {{source: fusion, model: {tiny_model}, count: 2, rank_window: [1, 5]}}
teacher: {{kind: fusion, model: {tiny_model}}}
loss: [{{loss: listwise_kl}}]
optim: {{batch_size: 2, epochs: 1, save_steps: 100}}
""")
    data = prepare_rows(load_recipe(recipe))
    assert data.rows.teacher_scores
    assert encoded == [6]  # the six documents, by mining; the teacher reads the cache entry


def test_min_max_top():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    np.testing.assert_allclose(min_max_top(scores, 3), [1.0, 0.5, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(min_max_top(scores, None), [1.0, 0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(min_max_top(np.zeros(3), 2), [1.0, 1.0, 1.0])


# ---------------------------------------------------------------- normalisation
def test_percentile_normalisation_known_answers():
    values = np.arange(101, dtype=float)  # percentiles are the values themselves
    assert percentile_bounds(values) == (1.0, 99.0)
    np.testing.assert_allclose(
        normalize_percentile([0.0, 1.0, 50.0, 99.0, 100.0], (1.0, 99.0)),
        [0.0, 0.0, 49 / 98, 1.0, 1.0],
        rtol=1e-6,
    )
    assert percentile_bounds([0.0, 10.0], 10, 90) == (1.0, 9.0)  # linear interpolation
    np.testing.assert_array_equal(
        normalize_percentile([1.0, 2.0, 3.0], (2.0, 2.0)), [0.0, 1.0, 1.0]
    )
    with pytest.raises(ValueError):
        percentile_bounds([])


def test_normalize_scores_and_keep_queries():
    raw = {"q1": {"a": -10.0, "b": 0.0}, "q2": {"c": 10.0, "d": 5.0}}
    normalised, (lo, hi) = normalize_scores(raw, 0, 100)
    assert (lo, hi) == (-10.0, 10.0)
    assert normalised == {"q1": {"a": 0.0, "b": 0.5}, "q2": {"c": 1.0, "d": 0.75}}

    best = {
        "a": {"x": 1.0},
        "b": {"x": 2.0, "y": 0.0},
        "c": {"x": 3.0},
        "d": {"x": 4.0},
        "e": {"x": 5.0},
    }
    # 25th percentile of the best scores [1..5] is 2: only 'a' falls below it.
    assert keep_queries(best, 25, of="best") == ["b", "c", "d", "e"]
    assert keep_queries(best, 0, of="best") == list(best)
    assert keep_queries(best, 99.9, of="best") == ["e"]
    with pytest.raises(ConfigError, match=r"percentile must be in \[0, 100\)"):
        keep_queries(best, 100, of="best")  # the one bound of every percentile cut
    # over all scores [1, 2, 0, 3, 4, 5] the 25th percentile is 1.25
    assert keep_queries(best, 25, of="all") == ["b", "c", "d", "e"]
    assert keep_queries({"q": {}}, 25) == []
    with pytest.raises(ConfigError, match="of must be 'all' or 'best'"):
        keep_queries(best, 25, of="top")


def test_weak_queries_are_cut_against_all_candidate_scores_of_their_type():
    # Five queries, each with its best candidate and four weak ones (Tamber et al.'s lists).
    scores = {
        q: {"top": top, **{f"c{i}": top / 10 for i in range(4)}}
        for q, top in {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}.items()
    }
    # The default, their rule: the 25th percentile of all 25 scores (0.2) keeps every query;
    # the kept queries' best scores would drop a quarter of them by construction.
    assert keep_queries(scores, 25) == list(scores)
    assert weak_query_thresholds(scores, 25) == {"all": pytest.approx(0.2)}
    assert keep_queries(scores, 25, of="best") == ["b", "c", "d", "e"]

    # Per query type, each against its own distribution: "a" and "b" on a scale of their own.
    types = {"a": "keywords", "b": "keywords", "c": "claims", "d": "claims", "e": "claims"}
    scores["a"], scores["b"] = {"top": 0.02, "c0": 0.01}, {"top": 0.04, "c0": 0.03}
    thresholds = weak_query_thresholds(scores, 25, types=types)
    assert thresholds == {"keywords": pytest.approx(0.0175), "claims": pytest.approx(0.35)}
    assert keep_queries(scores, 25, types=types) == list(scores)
    assert keep_queries(scores, 25) == ["c", "d", "e"]  # one pool: its cut 0.3 drops "a", "b"
    assert keep_queries(scores, 60, types=types) == ["b", "c", "d", "e"]
    # A query the types lack is "untyped", a type of its own.
    assert set(weak_query_thresholds(scores, 25, types={"a": "keywords"})) == {
        "keywords",
        "untyped",
    }


# ---------------------------------------------------------------- specs and files
def test_parse_teacher_spec():
    assert parse_teacher_spec("cross-encoder:/m") == ("cross_encoder", "/m")
    assert parse_teacher_spec("ce:cross-encoder/ms-marco-MiniLM-L-6-v2") == (
        "cross_encoder",
        "cross-encoder/ms-marco-MiniLM-L-6-v2",
    )
    # One spelling, the recipe's teacher.kind, whichever the command line used.
    assert parse_teacher_spec("file:s.jsonl") == parse_teacher_spec("scores_file:s.jsonl")
    assert {parse_teacher_spec(f"{k}:m")[0] for k in ("bi-encoder", "bi_encoder", "dense")} == {
        "bi_encoder"
    }
    assert parse_teacher_spec("fusion:all-MiniLM-L6-v2") == ("fusion", "all-MiniLM-L6-v2")
    for bad in ("mpnet", "oracle:x", "bi-encoder:"):
        with pytest.raises(ConfigError, match="expected cross_encoder:NAME"):
            parse_teacher_spec(bad)
    with pytest.raises(ConfigError, match="needs the collection's corpus"):
        build_teacher(*parse_teacher_spec("fusion:x"))


def test_read_scores_reports_file_line_field(tmp_path, tiny_collection):
    path = tmp_path / "scores.jsonl"
    path.write_text(
        json.dumps({"query_id": "q1", "doc_id": "d1", "score": 1.5})
        + "\n"
        + json.dumps({"query_id": "q1", "doc_id": "d2", "score": "high"})
        + "\n"
    )
    with pytest.raises(InputError) as info:
        read_scores(path)
    assert str(info.value) == f"{path}:2 field 'score': expected a finite number, got 'high'"
    path.write_text(json.dumps({"query_id": "q1", "doc_id": "d9", "score": 1}) + "\n")
    with pytest.raises(InputError, match=r":1 field 'doc_id': unknown document id 'd9'"):
        read_scores(path, load_collection(tiny_collection))
    path.write_text(json.dumps({"query_id": "q1", "doc_id": "d1", "score": 1}) + "\n")
    assert read_scores(path, load_collection(tiny_collection)) == {"q1": {"d1": 1.0}}


def test_the_spec_kinds_are_the_recipes_teacher_kinds():
    from typing import get_args

    from twotower.teachers.spec import KINDS
    from twotower.training.recipe_sections import TeacherConfig

    recipe_kinds = get_args(TeacherConfig.model_fields["kind"].annotation)
    assert set(recipe_kinds) == {"none", *KINDS}
