"""Mining, sampling, false-negative filtering, negative queries, the table and its file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import write_collection
from tests.negatives._fakes import FixedRetriever, TableTeacher
from twotower.data import load_collection
from twotower.errors import ConfigError, InputError
from twotower.models import Encoder
from twotower.models.embedding_cache import embedding_cache_dir
from twotower.negatives import (
    BM25Retriever,
    DenseRetriever,
    FusionRetriever,
    NegativesTable,
    RankWindow,
    false_negative_mask,
    mine_negative_queries,
    mine_negatives,
    read_negatives,
    rng_for,
    write_negatives,
)

N_DOCS, N_QUERIES = 60, 6


@pytest.fixture
def synthetic(tmp_path):
    """60 documents, 6 queries; query i has positives p{i}a (grade 2) and p{i}b (grade 1), and a
    grade-0 judgement (not a positive). Rankings are fixed by a FixedRetriever."""
    docs = [{"_id": f"d{j}", "title": "", "text": f"document number {j}"} for j in range(N_DOCS)]
    queries = [{"_id": f"q{i}", "text": f"query number {i}"} for i in range(N_QUERIES)]
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{i}\t2\nq{i}\td{i + 10}\t1\nq{i}\td{i + 20}\t0\n" for i in range(N_QUERIES)
    )
    collection = load_collection(
        write_collection(tmp_path / "syn", docs, queries, qrels, split="train"), "train"
    )
    rng = np.random.default_rng(123)
    ranking = {q: [f"d{j}" for j in rng.permutation(N_DOCS)] for q in collection.queries}
    return collection, FixedRetriever(ranking)


def check_invariants(collection, retriever, table, window, count):
    for qid, negatives in table.negatives.items():
        ranking = retriever.ranking[qid]
        assert not set(negatives) & collection.positives(qid)
        assert len(negatives) == len(set(negatives)) == (count or len(negatives))
        assert table.ranks[qid] == sorted(table.ranks[qid])
        for doc_id, rank in zip(negatives, table.ranks[qid], strict=True):
            assert ranking[rank - 1] == doc_id and window.start <= rank <= window.end
        assert table.positives[qid] == [f"d{qid[1:]}", f"d{int(qid[1:]) + 10}"]


def test_sampling_respects_window_count_positives_and_seed(synthetic):
    collection, retriever = synthetic
    window = RankWindow(5, 40)
    table, stats = mine_negatives(
        collection, retriever, window=window, count=7, seed=3, use_cache=False
    )
    assert list(table) == [f"q{i}" for i in range(N_QUERIES)] and stats.negatives == 7 * N_QUERIES
    check_invariants(collection, retriever, table, window, 7)
    again, _ = mine_negatives(
        collection, retriever, window=window, count=7, seed=3, use_cache=False
    )
    assert again.negatives == table.negatives and again.ranks == table.ranks
    other, _ = mine_negatives(
        collection, retriever, window=window, count=7, seed=4, use_cache=False
    )
    assert other.negatives != table.negatives
    # count=0: the whole window minus positives (a grade-0 judgement is a fine negative).
    full, stats = mine_negatives(collection, retriever, window=window, count=0, use_cache=False)
    for qid, negatives in full.negatives.items():
        expected = [d for d in retriever.ranking[qid][4:40] if d not in collection.positives(qid)]
        assert negatives == expected
    assert stats.candidates == full.total()
    # A query's sample does not depend on the other queries mined with it.
    alone, _ = mine_negatives(
        collection, retriever, window=window, count=7, seed=3, query_ids=["q2"], use_cache=False
    )
    assert alone.negatives == {"q2": table["q2"]}


def test_short_windows_are_reported(synthetic):
    collection, retriever = synthetic
    table, stats = mine_negatives(
        collection, retriever, window=RankWindow(1, 3), count=5, use_cache=False
    )
    assert stats.short == N_QUERIES and all(1 <= len(v) <= 3 for v in table.negatives.values())


def test_mining_cache_is_keyed_by_every_input(synthetic):
    collection, retriever = synthetic
    table, stats = mine_negatives(collection, retriever, count=4, seed=1)
    assert not stats.cached and retriever.calls == 1
    again, stats = mine_negatives(collection, retriever, count=4, seed=1)
    assert (
        stats.cached
        and retriever.calls == 1
        and again.negatives == table.negatives
        and again.ranks == table.ranks
    )
    for changed in (
        dict(count=5, seed=1),
        dict(count=4, seed=2),
        dict(count=4, seed=1, window=RankWindow(2, 50)),
    ):
        _, stats = mine_negatives(collection, retriever, **changed)
        assert not stats.cached


def test_a_damaged_cached_table_is_mined_again_never_used(synthetic):
    from twotower.negatives.cache import negatives_cache_dir

    collection, retriever = synthetic
    table, _ = mine_negatives(collection, retriever, count=4, seed=1)
    (entry,) = negatives_cache_dir().glob("*.jsonl")
    lines = entry.read_text().splitlines()
    swapped = lines[0].replace(table.negatives[next(iter(table.negatives))][0], "d-none", 1)
    entry.write_text("\n".join([swapped, *lines[1:]]) + "\n")  # still valid JSONL, wrong table
    again, stats = mine_negatives(collection, retriever, count=4, seed=1)
    assert not stats.cached and retriever.calls == 2 and again.negatives == table.negatives
    _, stats = mine_negatives(collection, retriever, count=4, seed=1)
    assert stats.cached


def test_false_negative_mask_is_exact():
    negatives = np.array([0.95, 0.9, 0.85, 0.2, 0.91])
    # positive 1.0, margin 0.1: drop scores > 0.9 exactly
    assert false_negative_mask(negatives, [1.0], 0.1).tolist() == [False, True, True, True, False]
    assert false_negative_mask(negatives, [1.0, 0.5], 0.1).tolist() == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert false_negative_mask(negatives, [1.0, 0.5], 0.1, "min").tolist() == [
        False,
        False,
        False,
        True,
        False,
    ]
    assert false_negative_mask([4.0, 1.0], [5.0], 3.0).tolist() == [
        False,
        True,
    ]  # cross-encoder logits, a margin of 3.0


def test_teacher_filter_drops_exactly_the_negatives_within_the_margin(synthetic):
    collection, retriever = synthetic
    # Teacher: every positive scores 1.0; documents d30..d39 score 0.95 (suspected false
    # negatives), the others 0.5.
    by_text = {
        collection.corpus.text_of(f"d{j}"): 0.95 if 30 <= j < 40 else 0.5 for j in range(N_DOCS)
    }
    by_text.update(
        {
            collection.corpus.text_of(d): 1.0
            for q in collection.queries
            for d in collection.positives(q)
        }
    )
    window = RankWindow(1, 60)

    def mine(teacher=None, margin=None, count=0, seed=0):
        return mine_negatives(
            collection,
            retriever,
            window=window,
            count=count,
            seed=seed,
            teacher=teacher,
            margin=margin,
            use_cache=False,
        )

    plain, _ = mine()
    filtered, stats = mine(TableTeacher(by_text), 0.1)
    # Dropped: scores above 1.0 - 0.1, i.e. d30..d39 and the other queries' positives (1.0).
    suspect = {d for d in collection.corpus.ids if by_text[collection.corpus.text_of(d)] > 0.9}
    assert suspect == {f"d{j}" for j in [*range(30, 40), *range(6), *range(10, 16)]}
    for qid in plain:
        assert filtered[qid] == [d for d in plain[qid] if d not in suspect]
    assert stats.false_negatives == sum(1 for q in plain for d in plain[q] if d in suspect)
    # A margin wider than every gap keeps nothing.
    none, _ = mine(TableTeacher(by_text), 0.6)
    assert none.total() == 0
    # With a count, candidates are scored lazily: far fewer pairs than the whole window.
    teacher = TableTeacher(by_text)
    sampled, stats = mine(teacher, 0.1, count=3, seed=5)
    assert all(len(v) == 3 and not set(v) & suspect for v in sampled.negatives.values())
    assert teacher.scored < 0.5 * plain.total()
    check_invariants(collection, retriever, sampled, window, 3)
    with pytest.raises(ConfigError, match="both a teacher and a margin"):
        mine(teacher)


def test_negative_queries_never_have_the_document_as_positive(synthetic):
    collection, _ = synthetic
    positive_docs = [f"d{i}" for i in range(N_QUERIES)] + [f"d{i + 10}" for i in range(N_QUERIES)]
    rng = np.random.default_rng(7)
    reverse = {d: [f"q{i}" for i in rng.permutation(N_QUERIES)] for d in positive_docs}
    retriever = FixedRetriever({}, reverse)
    table, stats = mine_negative_queries(collection, retriever, count=3, seed=0, use_cache=False)
    assert table.kind == "queries" and set(table) == set(positive_docs)
    for doc_id, negatives in table.negatives.items():
        owner = f"q{int(doc_id[1:]) % 10}"
        assert owner not in negatives and table.positives[doc_id] == [owner]
        assert len(negatives) == 3 and all(
            reverse[doc_id][r - 1] == q for q, r in zip(negatives, table.ranks[doc_id], strict=True)
        )
    again, _ = mine_negative_queries(collection, retriever, count=3, seed=0, use_cache=False)
    assert again.negatives == table.negatives
    everything, _ = mine_negative_queries(collection, retriever, count=0, use_cache=False)
    assert all(len(v) == N_QUERIES - 1 for v in everything.negatives.values())


def test_documents_and_queries_are_drawn_by_one_rule(synthetic):
    """Both kinds keep the first ``count`` window candidates of the anchor's permutation
    ``rng_for(seed, anchor)``, in rank order; a cached table carries the same settings."""
    collection, retriever = synthetic
    rng = np.random.default_rng(5)
    retriever.reverse = {
        d: [f"q{i}" for i in rng.permutation(N_QUERIES)]
        for q in collection.queries
        for d in sorted(collection.positives(q))
    }
    seed = 11

    def drawn(ranked, excluded, anchor, window, count):
        candidates = [(r, c) for r, c in enumerate(ranked, 1) if r in window and c not in excluded]
        order = rng_for(seed, anchor).permutation(len(candidates)).tolist()
        return [c for _, c in sorted(candidates[i] for i in order[:count])]

    window = RankWindow(2, 30)
    documents, _ = mine_negatives(collection, retriever, window=window, count=3, seed=seed)
    for qid, negatives in documents.negatives.items():
        assert negatives == drawn(retriever.ranking[qid], collection.positives(qid), qid, window, 3)
    window = RankWindow(1, 6)
    queries, _ = mine_negative_queries(collection, retriever, window=window, count=2, seed=seed)
    assert len(queries) == 2 * N_QUERIES
    for doc_id, negatives in queries.negatives.items():
        owners = {q for q in collection.qrels if doc_id in collection.positives(q)}
        assert negatives == drawn(retriever.reverse[doc_id], owners, doc_id, window, 2)
    cached, stats = mine_negative_queries(collection, retriever, window=window, count=2, seed=seed)
    assert stats.cached and cached.negatives == queries.negatives
    assert cached.meta["settings"] == queries.meta["settings"]


def test_real_retrievers_on_the_tiny_collection(tiny_collection, tiny_model):
    collection = load_collection(tiny_collection)
    encoder = Encoder.from_name(str(tiny_model), show_progress=False)
    window = RankWindow(1, 6)
    for retriever in (
        BM25Retriever(),
        DenseRetriever(encoder),
        FusionRetriever(encoder, alpha=0.5),
    ):
        table, _ = mine_negatives(collection, retriever, window=window, count=2, seed=0)
        assert set(table) == {"q1", "q2", "q3"}
        for qid, negatives in table.negatives.items():
            assert len(negatives) <= 2 and not set(negatives) & collection.positives(qid)
            # BM25 retrieves only documents sharing a term with the query (q1 matches d1 alone).
            assert negatives or isinstance(retriever, BM25Retriever)
    # The dense retriever shared the corpus embedding cache that evaluation uses.
    cached = (
        embedding_cache_dir()
        / f"{encoder.fingerprint_for('document')}-{collection.corpus.fingerprint[:24]}.npy"
    )
    assert cached.is_file()
    table, _ = mine_negative_queries(collection, DenseRetriever(encoder), count=1)
    qrels_positive = {
        d: {q for q in collection.qrels if d in collection.positives(q)}
        for d in collection.corpus.ids
    }
    assert set(table) == {"d1", "d3", "d4", "d6"}
    assert all(
        not set(negs) & qrels_positive[d] and len(negs) == 1 for d, negs in table.negatives.items()
    )


# ---------------------------------------------------------------- the file
def test_write_read_round_trip(tmp_path, tiny_collection):
    table = NegativesTable(
        {"q1": ["d2", "d3"], "q2": ["d1"]},
        ranks={"q1": [2, 5], "q2": [1]},
        positives={"q1": ["d1"], "q2": ["d3", "d4"]},
    )
    path = tmp_path / "negs.jsonl"
    assert write_negatives(path, table) == 2
    assert json.loads(path.read_text().splitlines()[0]) == {
        "query_id": "q1",
        "positive_ids": ["d1"],
        "negative_ids": ["d2", "d3"],
        "negative_ranks": [2, 5],
    }
    back = read_negatives(path, load_collection(tiny_collection))
    assert (back.negatives, back.ranks, back.positives, back.kind) == (
        table.negatives,
        table.ranks,
        table.positives,
        "documents",
    )
    dual = NegativesTable({"d1": ["q2"]}, positives={"d1": ["q1"]}, kind="queries")
    write_negatives(path, dual)
    assert json.loads(path.read_text()) == {
        "doc_id": "d1",
        "positive_ids": ["q1"],
        "negative_ids": ["q2"],
    }
    assert read_negatives(path, load_collection(tiny_collection)).negatives == {"d1": ["q2"]}


GOOD = {"query_id": "q1", "positive_ids": ["d1"], "negative_ids": ["d2"], "negative_ranks": [3]}


@pytest.mark.parametrize(
    "row, message",
    [
        ("{oops", ":2: malformed JSON"),
        (
            {"positive_ids": [], "negative_ids": ["d2"]},
            ":2 field 'query_id': missing required field",
        ),
        ({"query_id": "q2", "positive_ids": []}, ":2 field 'negative_ids': missing required field"),
        (
            {"query_id": "q2", "negative_ids": "d2"},
            ":2 field 'negative_ids': expected a list of ids, got str",
        ),
        (
            {"query_id": "q2", "negative_ids": ["d2", None]},
            ":2 field 'negative_ids': item 1: expected an id",
        ),
        (
            {"query_id": "q2", "negative_ids": ["d2"], "negative_ranks": [1, 2]},
            ":2 field 'negative_ranks': 2 ranks for 1 negatives",
        ),
        (
            {"query_id": "q2", "negative_ids": ["d2"], "negative_ranks": [0]},
            ":2 field 'negative_ranks': item 0: expected a rank >= 1",
        ),
        (
            {"query_id": "q1", "negative_ids": ["d2"]},
            ":2 field 'query_id': duplicate id 'q1' (first on line 1)",
        ),
        (
            {"query_id": "q2", "positive_ids": ["d3"], "negative_ids": ["d3"]},
            ":2 field 'negative_ids': 'd3' is both a positive and a negative",
        ),
        ({"query_id": "q9", "negative_ids": ["d2"]}, ":2 field 'query_id': unknown query id 'q9'"),
        (
            {"query_id": "q2", "negative_ids": ["d2", "x", "y"]},
            ":2 field 'negative_ids': unknown document id 'x' (and 1 more)",
        ),
        (
            {"query_id": "q2", "positive_ids": ["zz"], "negative_ids": []},
            ":2 field 'positive_ids': unknown document id 'zz'",
        ),
    ],
)
def test_reader_reports_file_line_field(tmp_path, tiny_collection, row, message):
    path = tmp_path / "negs.jsonl"
    path.write_text(
        json.dumps(GOOD) + "\n" + (row if isinstance(row, str) else json.dumps(row)) + "\n"
    )
    with pytest.raises(InputError) as info:
        read_negatives(path, load_collection(tiny_collection))
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_rank_window_parsing():
    assert RankWindow.parse("10:100") == RankWindow(10, 100) == RankWindow.parse("10-100")
    assert 10 in RankWindow(10, 100) and 100 in RankWindow(10, 100) and 9 not in RankWindow(10, 100)
    for bad in ("10", "a:b"):
        with pytest.raises(ConfigError, match="expected START:END"):
            RankWindow.parse(bad)
    for bad in ("0:5", "9:3"):
        with pytest.raises(ConfigError, match=f"rank window {bad}: need 1 <= start <= end"):
            RankWindow.parse(bad)
