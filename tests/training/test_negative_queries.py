"""DANCE negative-query columns in training, and the listwise weak-query filter."""

import pytest
from typer.testing import CliRunner

from tests.conftest import DOCS, write_collection
from twotower.cli.main import app
from twotower.errors import ConfigError
from twotower.training.examples import Example
from twotower.training.pipeline import weak_query_filter
from twotower.training.recipe import load_recipe
from twotower.training.rows import TrainingRows
from twotower.training.teacher_rows import teacher_scores_for

DUAL_DOCS = DOCS + [
    {"_id": "d7", "title": "Tennis", "text": "Tennis is played with rackets on a court."},
    {"_id": "d8", "title": "Rain", "text": "Rain falls from clouds when droplets grow heavy."},
]
DUAL_QUERIES = [
    {"_id": f"q{i}", "text": t}
    for i, t in enumerate(
        [
            "which small feline purrs",
            "loyal barking animal",
            "safe systems programming language",
            "language for machine learning",
            "brewed green leaves",
            "roasted coffee seeds",
            "racket sport on a court",
            "why does rain fall",
        ],
        start=1,
    )
]


@pytest.fixture
def dual_collection(tmp_path):
    """Eight queries, one positive each: enough rows for batches whose negative queries are not
    another row's anchor (the no-duplicates sampler keeps such rows apart)."""
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(1, 9))
    return write_collection(tmp_path / "dual", DUAL_DOCS, DUAL_QUERIES, qrels, split="train")


def dual_recipe(tmp_path, model, collection, towers="separate"):
    text = f"""# negative queries
model: {{name: {model}, towers: {towers}}}
train: {{data: {collection}, split: train}}
negatives: {{source: dense, count: 1, rank_window: [1, 5], negative_queries: 1, negative_query_window: [1, 3]}}
teacher: {{kind: fusion, model: {model}}}
loss:
  - {{loss: margin_mse, dual_weight: 1.0, dual_negatives: mined}}
  - {{loss: contrastive, preset: mnrl_dual, weight: 0.1}}
optim: {{batch_size: 2, max_steps: 2, save_steps: 100, precision: fp32, logging_steps: 1}}
"""
    path = tmp_path / "dual.yaml"
    path.write_text(text)
    return path


def test_separate_towers_route_negative_queries_to_the_query_tower(
    tmp_path, tiny_model, dual_collection, monkeypatch
):
    import sentence_transformers

    from twotower.losses.st_loss import SentenceTransformerLoss

    seen = {}

    class Recording(sentence_transformers.SentenceTransformerTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["router_mapping"] = dict(self.args.router_mapping)
            rows = self.train_dataset[:]  # drawn when read
            seen["columns"] = list(rows)
            seen["labels"] = rows["label"]
            seen["negative_queries"] = rows["negative_query_1"]

    forward = SentenceTransformerLoss.forward

    def recording_forward(self, sentence_features, labels):
        features = list(sentence_features)
        seen.setdefault("tasks", []).append([f.get("task") for f in features])
        seen["loss_m"] = self.num_negative_query_columns
        seen["label_shape"] = tuple(labels["teacher_scores"].shape)
        seen["ids"] = {
            name: tuple(value.shape) for name, value in labels.items() if name != "teacher_scores"
        }
        return forward(self, features, labels)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformerTrainer", Recording)
    monkeypatch.setattr(SentenceTransformerLoss, "forward", recording_forward)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(dual_recipe(tmp_path, tiny_model, dual_collection)),
            "--output-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["columns"] == [
        "anchor",
        "positive",
        "negative_1",
        "negative_query_1",
        "label",
        "twotower_ids",
    ]
    assert seen["router_mapping"] == {
        "anchor": "query",
        "positive": "document",
        "negative_1": "document",
        "negative_query_1": "query",
    }
    # Every batch: the anchor and the negative-query column ran through the query route.
    assert seen["tasks"] and all(
        t == ["query", "document", "document", "query"] for t in seen["tasks"]
    )
    assert seen["loss_m"] == 1
    assert all(len(row) == 1 + 1 + 1 for row in seen["labels"])  # 1 + K + M
    assert seen["label_shape"][1] == 3
    # The ids of every text reach the loss (for false-negative masking).
    n = seen["label_shape"][0]
    assert seen["ids"]["query_ids"] == seen["ids"]["positive_ids"] == (n,)
    assert seen["ids"]["hard_negative_ids"] == seen["ids"]["negative_query_ids"] == (n, 1)
    assert seen["ids"]["query_positive_ids"][0] == n
    assert set(seen["negative_queries"]) <= {q["text"] for q in DUAL_QUERIES}
    assert (out / "model" / "TRAINING_DONE").is_file()


def test_shared_towers_train_with_negative_queries(tmp_path, tiny_model, dual_collection):
    path = dual_recipe(tmp_path, tiny_model, dual_collection, towers="shared")
    result = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(tmp_path / "shared")])
    assert result.exit_code == 0, result.output
    import json

    info = json.loads((tmp_path / "shared" / "data.json").read_text())
    assert info["negative_query_mining"]["negatives"] > 0
    assert info["examples_without_negative_queries"] == 0


def _dual_rows(collection, table, seed=7):
    examples = [
        Example("q2 text", "doc3", query_id="q2", positive_id="d3"),
        Example("q2 text", "doc4", query_id="q2", positive_id="d4"),
        Example("q1 text", "doc1", query_id="q1", positive_id="d1"),
    ]
    return TrainingRows(
        examples, collection, negatives=0, negative_queries=3, seed=seed, queries=table
    )


def test_negative_queries_are_drawn_deterministically_and_never_a_positive(train_collection):
    from twotower.data.collection import load_collection

    collection = load_collection(str(train_collection), "train")
    # A table that (wrongly) lists the query itself and a query judging the document: both skipped.
    table = {"d3": ["q2", "q1", "q3"], "d4": ["q2"], "d1": ["q1", "q2", "q3"]}
    rows = _dual_rows(collection, table)
    assert rows.dropped == {"negatives": 0, "negative_queries": 1} and len(rows) == 2
    first, second = rows.drawn(0), rows.drawn(1)
    assert set(first.negative_query_keys) <= {"q1", "q3"} and len(first.negative_query_keys) == 3
    assert set(second.negative_query_keys) <= {"q2", "q3"}
    assert second.negative_queries == [collection.queries[q] for q in second.negative_query_keys]
    again = _dual_rows(collection, table)
    assert [again.drawn(i).negative_query_keys for i in range(2)] == [
        rows.drawn(i).negative_query_keys for i in range(2)
    ]


def test_teacher_scores_and_columns_with_negative_queries():
    examples = [
        Example("q", "d+", ["d-1", "d-2"], query_id="q"),
        Example("r", "e+", ["e-1"], query_id="r"),  # too few negatives: left out
    ]
    rows = TrainingRows(examples, None, negatives=2)
    assert len(rows) == 1 and rows.dropped["negatives"] == 1
    pairs = []

    class Recording:
        def score_pairs(self, queries, documents):
            pairs.extend(zip(queries, documents, strict=True))
            return list(range(len(queries)))

    rows.teacher_scores = teacher_scores_for(Recording(), [rows.drawn(0)], None)
    assert pairs == [("q", "d+"), ("q", "d-1"), ("q", "d-2")]
    row = rows.read(0, with_teacher=True)
    assert [k for k in row if k != "twotower_ids"] == [
        "anchor",
        "positive",
        "negative_1",
        "negative_2",
        "label",
    ]
    assert row["negative_2"] == "d-2" and row["label"] == [0, 1, 2]


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_negative_queries_need_a_loss_that_reads_them(tmp_path):
    with pytest.raises(
        ConfigError, match=r"negatives.negative_queries: 2, but no loss reads negative queries"
    ):
        load_recipe(
            write(
                tmp_path,
                "negatives: {source: bm25, negative_queries: 2}\nloss:\n  - {loss: contrastive, preset: mnrl}\n",
            )
        )
    recipe = load_recipe(
        write(
            tmp_path,
            "negatives: {source: bm25, negative_queries: 2}\nloss:\n  - {loss: contrastive, preset: mnrl_dual}\n",
        )
    )
    assert recipe.negatives.negative_queries == 2


def test_mined_dual_margin_mse_needs_negative_queries(tmp_path):
    base = "negatives: {source: bm25, count: 1}\nteacher: {kind: fusion, model: m}\n"
    with pytest.raises(
        ConfigError, match=r"needs mined negative queries: set negatives.negative_queries >= 1"
    ):
        load_recipe(write(tmp_path, base + "loss:\n  - {loss: margin_mse, dual_weight: 1}\n"))
    with pytest.raises(ConfigError, match=r"dual_negatives: in_batch needs teacher scores"):
        load_recipe(
            write(
                tmp_path,
                base + "loss:\n  - {loss: margin_mse, dual_weight: 1, dual_negatives: in_batch}\n",
            )
        )


def test_negative_queries_refuse_frozen_documents_and_pairs_files(tmp_path):
    loss = "loss:\n  - {loss: contrastive, preset: mnrl_dual}\n"
    with pytest.raises(ConfigError, match=r"train_document_tower: true"):
        load_recipe(
            write(
                tmp_path,
                "model: {towers: separate, train_document_tower: false}\n"
                "negatives: {negative_queries: 1}\n" + loss,
            )
        )
    with pytest.raises(ConfigError, match=r"use train.data, not train.pairs"):
        load_recipe(
            write(tmp_path, "train: {pairs: p.jsonl}\nnegatives: {negative_queries: 1}\n" + loss)
        )


def test_drop_below_percentile_needs_a_teacher(tmp_path):
    with pytest.raises(
        ConfigError, match=r"teacher.drop_below_percentile filters queries by teacher score"
    ):
        load_recipe(write(tmp_path, "teacher: {drop_below_percentile: 25}\n"))


# --- listwise: the weak-query filter ------------------------------------------------------------


def test_weak_query_filter_drops_queries_whose_best_score_is_low():
    best = {"a": 0.9, "b": 0.8, "c": 0.3, "d": 0.6}
    examples = [Example(q, f"pos-{q}", [f"neg-{q}"], query_id=q) for q in best]
    scores = {(q, f"pos-{q}"): s for q, s in best.items()}
    scores.update({(q, f"neg-{q}"): s / 2 for q, s in best.items()})
    # A second example of query "c" with a better document lifts its best score.
    examples.append(Example("c", "pos2", ["neg2"], query_id="c"))
    scores.update({("c", "pos2"): 0.1, ("c", "neg2"): 0.95})
    rows = TrainingRows(examples, None, negatives=1)
    rows.teacher_scores = scores
    drawn = [rows.drawn(i) for i in range(len(rows))]
    # Best scores a 0.9, b 0.8, c 0.95, d 0.6, cut against all ten scores: their 75th
    # percentile (0.75) drops d only, their 25th (0.3) none.
    assert weak_query_filter(rows, drawn, 75) == {"a", "b", "c"}
    assert weak_query_filter(rows, drawn, 25) == {"a", "b", "c", "d"}


def test_listwise_run_drops_weak_queries_and_normalises(tmp_path, tiny_model, train_collection):

    text = f"""# listwise
model: {{name: {tiny_model}, max_document_length: 48}}
train: {{data: {train_collection}, split: train, max_document_length: 16}}
negatives: {{source: dense, count: 2, rank_window: [1, 5]}}
teacher: {{kind: fusion, model: {tiny_model}, normalize: true, drop_below_percentile: 90}}
loss:
  - {{loss: listwise_kl}}
optim: {{batch_size: 2, max_steps: 1, save_steps: 100, precision: fp32}}
"""
    path = tmp_path / "listwise.yaml"
    path.write_text(text)
    from twotower.training.pipeline import prepare_rows

    recipe = load_recipe(path)
    data = prepare_rows(recipe)
    assert data.info["weak_queries_dropped"] >= 1
    assert data.info["examples"] == len(data.rows) < 4
    assert all(0.0 <= s <= 1.0 for s in data.rows.teacher_scores.values())
    result = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(tmp_path / "lw")])
    assert result.exit_code == 0, result.output
    from sentence_transformers import SentenceTransformer

    # train.max_document_length truncates while training only: the saved model keeps 48.
    assert SentenceTransformer(str(tmp_path / "lw" / "model"), device="cpu").max_seq_length == 48
