"""Training rows: negatives drawn when a row is read, triples files' negatives, ids in batches."""

import json

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import QRELS, write_collection
from twotower.cli.main import app
from twotower.data.collection import load_collection
from twotower.losses.st_loss import TEACHER_SCORES, SentenceTransformerLoss
from twotower.training.collate import IDS_COLUMN, ROW_COLUMN, RowsCollator, rows_dataset
from twotower.training.examples import Example
from twotower.training.pipeline import _score_rows, prepare_rows
from twotower.training.recipe import Recipe, load_recipe
from twotower.training.rows import TrainingRows


@pytest.fixture
def collection(tmp_path):
    root = write_collection(tmp_path / "c")
    (root / "qrels" / "train.tsv").write_text(QRELS)
    return load_collection(str(root), "train")


def test_rows_read_the_newest_published_table_and_never_a_positive(collection):
    examples = [Example(collection.queries["q2"], "x", query_id="q2", positive_id="d3")]
    rows = TrainingRows(
        examples, collection, negatives=2, seed=3, documents={"q2": ["d3", "d4", "d1", "d2"]}
    )
    first = rows.drawn(0)
    # d3 and d4 are positives of q2: only d1 and d2 can be drawn.
    assert sorted(first.negative_keys) == ["d1", "d2"]
    assert rows.drawn(0).negative_keys == first.negative_keys  # every reader sees the same draw
    assert rows.publish(documents={"q2": ["d5", "d4", "d6"]}) == 1
    assert sorted(rows.drawn(0).negative_keys) == ["d5", "d6"]
    assert rows.drawn(0).negatives == [
        collection.corpus.text_of(d) for d in rows.drawn(0).negative_keys
    ]
    # The dataset the trainer holds reads the new table without being rebuilt.
    dataset = rows_dataset(lambda i: rows.read(i, with_teacher=False), len(rows))
    rows.publish(documents={"q2": ["d1", "d2"]})
    assert {dataset[0]["negative_1"], dataset[0]["negative_2"]} == {
        collection.corpus.text_of("d1"),
        collection.corpus.text_of("d2"),
    }


def test_rows_as_first_mined_stay_as_they_were_and_numbered_rows_collate_to_their_numbers(
    collection,
):
    examples = [Example(collection.queries["q2"], "x", query_id="q2", positive_id="d3")]
    rows = TrainingRows(examples, collection, negatives=1, documents={"q2": ["d1", "d2"]})
    first = rows.drawn(0).negative_keys
    rows.publish(documents={"q2": ["d5", "d6"]})
    assert rows.drawn(0, mined=True).negative_keys == first  # what the batch sampler reads
    assert set(rows.drawn(0).negative_keys) <= {"d5", "d6"}
    # The data loader reads ahead: it collects row numbers, drawn when their step begins.
    dataset = rows_dataset(lambda i: rows.read(i, with_teacher=False), len(rows), numbered=True)
    assert RowsCollator()([dataset[0]]) == {ROW_COLUMN: [0]}


def test_a_partial_refresh_keeps_the_other_queries_candidates(collection):
    examples = [
        Example("q1", "p", query_id="q1", positive_id="d1"),
        Example("q3", "p", query_id="q3", positive_id="d6"),
    ]
    rows = TrainingRows(examples, collection, negatives=1, documents={"q1": ["d2"], "q3": ["d5"]})
    rows.publish(documents={"q1": ["d4"]})
    assert rows.drawn(0).negative_keys == ["d4"] and rows.drawn(1).negative_keys == ["d5"]
    # A refreshed anchor that came back with no candidate keeps its old ones: rows stay drawable.
    rows.publish(documents={"q1": [], "q3": ["d2"]})
    assert rows.drawn(0).negative_keys == ["d4"] and rows.drawn(1).negative_keys == ["d2"]


def _rows_to_filter(collection):
    """Rows of q1, q2 (two positives) and q3 (its pair twice) that draw two of several hard
    negatives and two of three negative queries."""
    examples = [
        Example(collection.queries[q], collection.corpus.text_of(d), query_id=q, positive_id=d)
        for q, d in [("q1", "d1"), ("q2", "d3"), ("q2", "d4"), ("q3", "d6"), ("q3", "d6")]
    ]
    documents = {
        "q1": ["d2", "d3", "d4", "d5", "d6"],
        "q2": ["d1", "d2", "d5", "d6"],
        "q3": ["d1", "d2", "d3", "d4", "d5"],
    }
    queries = {
        d: [q for q in ("q1", "q2", "q3", "q4") if d not in collection.positives(q)]
        for d in ("d1", "d3", "d4", "d6")
    }
    return TrainingRows(
        examples,
        collection,
        negatives=2,
        negative_queries=2,
        seed=5,
        documents=documents,
        queries=queries,
    )


def _draws(rows):
    return [
        (r.example.query_id, r.negative_keys, r.negative_query_keys)
        for r in map(rows.drawn, range(len(rows)))
    ]


def test_dropping_queries_leaves_the_other_rows_draws_as_they_were(collection):
    """The weak-query filter drops rows after the teacher scored them as drawn: every row left,
    moved up by the drop, must still draw the negatives that were scored."""
    rows = _rows_to_filter(collection)
    before = _draws(rows)
    assert rows.keep_queries({"q2", "q3"}) == 1
    assert _draws(rows) == before[1:]
    assert rows.row_ids[-2:] == [("q3", "d6", 0), ("q3", "d6", 1)]  # a repeated pair, two rows
    # Another reader of the same examples (another process) draws the same; a new generation
    # (here the same tables published again) draws anew.
    assert _draws(_rows_to_filter(collection))[1:] == before[1:]
    rows.publish(documents={}, queries={})
    assert _draws(rows) != before[1:]


class _WeakQ1Teacher:
    """Scores every pair of q1 0 and every other pair 1: q1 is below the 25th percentile of
    the queries' best scores, and of all scores."""

    def __init__(self, collection):
        self.weak = collection.queries["q1"]

    def score_pairs(self, queries, documents):
        return [0.0 if q == self.weak else 1.0 for q in queries]

    def score_ids(self, collection, query_ids, doc_ids):  # rows of a collection ask by ids
        return [0.0 if q == "q1" else 1.0 for q in query_ids]


def test_every_row_left_by_the_weak_query_filter_has_its_teacher_scores(collection):
    """Scores, weak-query filter, normalisation as `recipes/listwise.yaml` has them: a row the
    teacher did not score stops training before its first step."""
    rows = _rows_to_filter(collection)
    recipe = Recipe.model_validate(
        {
            "teacher": {
                "kind": "scores_file",
                "model": "-",
                "normalize": True,
                "drop_below_percentile": 25,
            }
        }
    )
    info = {}
    _score_rows(recipe.teacher, rows, _WeakQ1Teacher(collection), info)
    assert info["weak_queries_dropped"] == 1 and info["weak_query_examples_dropped"] == 1
    assert [e.query_id for e in rows.examples] == ["q2", "q2", "q3", "q3"]
    for index in range(len(rows)):
        assert len(rows.teacher_row(rows.drawn(index))) == 1 + 2 + 2


def _triples(tmp_path, rows):
    path = tmp_path / "triples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


TRIPLES = [
    {
        "query": "what is a cat",
        "positive": "cats purr",
        "negatives": ["dogs bark", "fish swim", "owls hoot"],
    },
    {"query": "what is a dog", "positive": "dogs bark", "negatives": ["cats purr", "bees buzz"]},
    {
        "query": "why do birds sing",
        "positive": "birds sing at dawn",
        "negatives": ["cows moo", "frogs croak"],
    },
]


def test_a_triples_file_trains_on_its_negatives(tmp_path, tiny_model):
    """Before, train.pairs forced zero negative columns: the file's negatives were dropped."""
    path = tmp_path / "r.yaml"
    path.write_text(
        f"model: {{name: {tiny_model}}}\n"
        f"train: {{data: null, pairs: {_triples(tmp_path, TRIPLES)}}}\n"
        "optim: {batch_size: 2, max_steps: 1, save_steps: 100, precision: fp32}\n"
    )
    data = prepare_rows(load_recipe(path))
    assert data.info["triples"] == {
        "negatives_per_row": 2,
        "rows_with_negatives": 3,
        "widest_row": 3,
    }
    row = data.rows.read(0, with_teacher=False)
    assert (row["negative_1"], row["negative_2"]) == ("dogs bark", "fish swim")
    capped = tmp_path / "capped.yaml"
    capped.write_text(path.read_text() + "negatives: {count: 1}\n")
    assert prepare_rows(load_recipe(capped)).rows.num_negatives == 1
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "data.json").read_text())
    assert info["negatives_per_row"] == 2 and info["examples"] == 3


class _ListCollator:
    """Stands in for sentence-transformers' collator: texts pass through, labels stack."""

    def __call__(self, features):
        batch = {k: [f[k] for f in features] for k in features[0] if k != "label"}
        if "label" in features[0]:
            batch["label"] = torch.tensor([f["label"] for f in features])
        return batch


class _Collator(RowsCollator, _ListCollator):
    pass


def test_ids_reach_the_loss_and_mask_a_known_positive_drawn_for_another_row(collection):
    """q2's positives are d3 and d4. Row 0 is (q2, d3); row 1's hard negative is d4: in row 0's
    softmax d4 is a false negative and must be masked, as it is once ids reach the loss."""
    examples = [
        Example(collection.queries["q2"], "doc three", query_id="q2", positive_id="d3"),
        Example(collection.queries["q1"], "doc one", query_id="q1", positive_id="d1"),
    ]
    documents = {"q2": ["d5"], "q1": ["d4"]}
    rows = TrainingRows(examples, collection, negatives=1, documents=documents)
    batch = _Collator()([rows.read(i, with_teacher=False) for i in range(2)])
    labels = batch["label"]
    assert IDS_COLUMN not in batch and labels[TEACHER_SCORES] is None
    d4 = labels["hard_negative_ids"][1, 0]
    assert d4 in labels["query_positive_ids"][0] and d4 not in labels["query_positive_ids"][1]

    torch.manual_seed(0)
    q, p, h = torch.randn(2, 8), torch.randn(2, 8), torch.randn(2, 8)
    loss = SentenceTransformerLoss(torch.nn.Identity(), {"loss": "contrastive", "preset": "mnrl"})
    with_ids = loss.compute_loss_from_embeddings([q, p, h], labels)
    without_ids = loss.compute_loss_from_embeddings([q, p, h], None)

    def info_nce(row, candidates):
        scores = torch.nn.functional.cosine_similarity(q[row : row + 1], candidates) / 0.05
        return -torch.log_softmax(scores, 0)[row]

    everything = torch.cat([p, h])
    masked_row0 = torch.cat([p, h[:1]])  # h[1] (d4) left out of row 0's softmax
    expected = (info_nce(0, masked_row0) + info_nce(1, everything)) / 2
    assert with_ids == pytest.approx(expected.item(), rel=1e-5)
    assert without_ids == pytest.approx(
        ((info_nce(0, everything) + info_nce(1, everything)) / 2).item(), rel=1e-5
    )
    assert with_ids != pytest.approx(without_ids.item(), rel=1e-5)
