"""Synthetic-queries files: loading, the errors they get, and training on them."""

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import QRELS, write_collection
from twotower.cli.main import app
from twotower.data import load_collection, load_corpus, load_synthetic_queries
from twotower.errors import InputError
from twotower.training.pipeline import prepare_rows
from twotower.training.recipe import load_recipe

ROWS = [
    {"query": "purring feline pets", "doc_id": "d1", "type": "question"},
    {"query": "Rust memory safety", "doc_id": "d3", "query_id": "g-2", "type": "keywords"},
    {"query": "brewing green tea leaves", "doc_id": "d5", "type": "question"},
    {"query": "coffee plant seeds", "doc_id": "d6"},
]


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_queries_become_a_collection_over_the_corpus(tmp_path, tiny_collection):
    path = write_rows(tmp_path / "syn.jsonl", ROWS)
    collection, types = load_synthetic_queries(path, load_corpus(tiny_collection))
    assert (
        collection.split == "synthetic"
        and collection.corpus.ids == load_corpus(tiny_collection).corpus.ids
    )
    assert collection.queries == {
        "synthetic-1": "purring feline pets",
        "g-2": "Rust memory safety",
        "synthetic-3": "brewing green tea leaves",
        "synthetic-4": "coffee plant seeds",
    }
    assert collection.qrels["g-2"] == {"d3": 1} and collection.positives("synthetic-4") == {"d6"}
    assert types == {"question": 2, "keywords": 1, "untyped": 1}
    only, types = load_synthetic_queries(path, load_corpus(tiny_collection), types=["question"])
    assert list(only.queries) == ["synthetic-1", "synthetic-3"] and types == {"question": 2}


def test_joined_with_the_labelled_split(tmp_path, tiny_collection):
    path = write_rows(tmp_path / "syn.jsonl", ROWS[:2])
    labelled = load_collection(tiny_collection, "test")
    joined, _ = load_synthetic_queries(path, labelled, include_split=True)
    assert joined.split == "test+synthetic"
    assert set(joined.judged_query_ids) == {"q1", "q2", "q3", "synthetic-1", "g-2"}
    assert joined.qrels["q2"] == labelled.qrels["q2"]
    clash = write_rows(tmp_path / "clash.jsonl", [{"query": "x", "doc_id": "d1", "query_id": "q1"}])
    with pytest.raises(
        InputError, match=r"clash.jsonl:1 field 'query_id': query id 'q1' is also a query"
    ):
        load_synthetic_queries(clash, labelled, include_split=True)


@pytest.mark.parametrize(
    ("row", "line", "message"),
    [
        ('{"query": "x", "doc_id": ', 2, r"syn.jsonl:2: malformed JSON"),
        ({"doc_id": "d1"}, 2, r"syn.jsonl:2 field 'query': missing required field"),
        ({"query": "  ", "doc_id": "d1"}, 2, r"syn.jsonl:2 field 'query': empty text"),
        ({"query": "x"}, 2, r"syn.jsonl:2 field 'doc_id': missing required field"),
        (
            {"query": "x", "doc_id": "nope"},
            2,
            r"syn.jsonl:2 field 'doc_id': unknown document id 'nope'",
        ),
        (
            {"query": "x", "doc_id": "d1", "query_id": "g-2"},
            3,
            r"syn.jsonl:3 field 'query_id': duplicate query id 'g-2' \(first on line 2\)",
        ),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, tiny_collection, row, line, message):
    rows = [ROWS[0], row] if line == 2 else [ROWS[0], ROWS[1], row]
    path = write_rows(tmp_path / "syn.jsonl", rows)
    with pytest.raises(InputError, match=message):
        load_synthetic_queries(path, load_corpus(tiny_collection))


def test_no_query_of_the_wanted_type(tmp_path, tiny_collection):
    path = write_rows(tmp_path / "syn.jsonl", ROWS)
    with pytest.raises(InputError, match="no synthetic query of type title"):
        load_synthetic_queries(path, load_corpus(tiny_collection), types=["title"])


def synthetic_recipe(tmp_path, model, collection, synthetic, extra=""):
    path = tmp_path / "syn.yaml"
    path.write_text(f"""model: {{name: {model}}}
train: {{data: {collection}, synthetic_queries: {synthetic}{extra}}}
negatives: {{source: dense, count: 1, rank_window: [1, 5]}}
loss: [{{loss: contrastive, preset: mnrl}}]
optim: {{batch_size: 2, epochs: 1, save_steps: 100, precision: fp32}}
eval: {{collections: [{collection}], probe: false}}
""")
    return path


def test_recipe_trains_on_synthetic_queries(tmp_path, tiny_model, tiny_collection):
    # The collection has no train split: the synthetic queries need only its corpus.
    synthetic = write_rows(tmp_path / "syn.jsonl", ROWS)
    recipe = load_recipe(synthetic_recipe(tmp_path, tiny_model, tiny_collection, synthetic))
    data = prepare_rows(recipe)
    examples = data.rows.examples
    assert [e.query for e in examples] == [r["query"] for r in ROWS]
    assert [e.positive_id for e in examples] == ["d1", "d3", "d5", "d6"]
    drawn = [data.rows.drawn(i) for i in range(len(examples))]
    assert all(
        len(r.negative_keys) == 1 and r.negative_keys[0] != r.example.positive_id for r in drawn
    )
    assert data.info["synthetic_queries"]["types"] == {"question": 2, "keywords": 1, "untyped": 1}
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(synthetic_recipe(tmp_path, tiny_model, tiny_collection, synthetic)),
            "--output-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["train"]["steps"] == 2


def test_recipe_joins_split_and_filters_types(tmp_path, tiny_model):
    collection = write_collection(tmp_path / "c")
    (collection / "qrels" / "train.tsv").write_text(QRELS)
    synthetic = write_rows(tmp_path / "syn.jsonl", ROWS)
    path = synthetic_recipe(
        tmp_path,
        tiny_model,
        collection,
        synthetic,
        ", include_split: true, query_types: [question]",
    )
    data = prepare_rows(load_recipe(path))
    assert sorted(e.query_id for e in data.rows.examples) == [
        "q1",
        "q2",
        "q2",
        "q3",
        "synthetic-1",
        "synthetic-3",
    ]
    assert data.info["synthetic_queries"]["labelled_queries"] == 4


def test_recipe_rejects_synthetic_options_without_a_corpus(tmp_path):
    from twotower.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text(
        "train: {data: scifact, query_types: [question]}\nloss: [{loss: contrastive}]\n"
    )
    with pytest.raises(ConfigError, match="train.synthetic_queries, which is not set"):
        load_recipe(path)
    path.write_text(
        "train: {pairs: p.jsonl, data: null, synthetic_queries: s.jsonl}\nloss: [{loss: contrastive}]\n"
    )
    with pytest.raises(ConfigError, match="set train.data, not train.pairs"):
        load_recipe(path)
