"""Training rows: negatives drawn when a row is read, triples files' negatives, ids in batches."""

import json

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import QRELS, write_collection
from twotower.cli.main import app
from twotower.data.collection import load_collection
from twotower.losses.st_loss import TEACHER_SCORES, SentenceTransformerLoss
from twotower.training.examples import Example
from twotower.training.pipeline import prepare_rows
from twotower.training.recipe import load_recipe
from twotower.training.rows import IDS_COLUMN, RowsCollator, TrainingRows


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
    dataset = rows.dataset(lambda i: rows.read(i, with_teacher=False))
    rows.publish(documents={"q2": ["d1", "d2"]})
    assert {dataset[0]["negative_1"], dataset[0]["negative_2"]} == {
        collection.corpus.text_of("d1"),
        collection.corpus.text_of("d2"),
    }


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
