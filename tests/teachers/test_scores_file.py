"""Teacher scores and hard negatives from files: `twotower mine` → `twotower teach` → a recipe."""

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import QRELS, write_collection
from twotower.cli.main import app
from twotower.data import load_collection
from twotower.errors import ConfigError, InputError
from twotower.teachers import ScoresFileTeacher, build_teacher, parse_teacher_spec, read_scores
from twotower.training.examples import examples_from_collection
from twotower.training.pipeline import prepare_rows
from twotower.training.recipe import load_recipe

runner = CliRunner()


def scores_file(path, rows):
    path.write_text(
        "".join(json.dumps({"query_id": q, "doc_id": d, "score": s}) + "\n" for q, d, s in rows)
    )
    return path


def files_recipe(tmp_path, model, collection, negatives, scores):
    """Margin-MSE over negatives and teacher scores that both come from files."""
    path = tmp_path / "files.yaml"
    path.write_text(f"""model: {{name: {model}}}
train: {{data: {collection}, split: train}}
negatives: {{source: file, file: {negatives}, count: 1}}
teacher: {{kind: scores_file, model: {scores}}}
loss: [{{loss: margin_mse}}]
optim: {{batch_size: 2, epochs: 1, save_steps: 100, precision: fp32}}
eval: {{collections: [{collection}], probe: false}}
""")
    return path


def test_scores_come_from_the_file_by_text(tmp_path, tiny_collection):
    collection = load_collection(tiny_collection)
    path = scores_file(
        tmp_path / "s.jsonl", [("q1", "d1", 9.0), ("q1", "d2", 1.5), ("q2", "d3", -2.0)]
    )
    teacher = build_teacher(*parse_teacher_spec(f"file:{path}"), collection=collection)
    assert isinstance(teacher, ScoresFileTeacher) and len(teacher) == 3
    text = collection.corpus.text_of
    q = collection.queries
    got = teacher.score_pairs([q["q1"], q["q2"], q["q1"]], [text("d2"), text("d3"), text("d1")])
    assert got.tolist() == [1.5, -2.0, 9.0]
    with pytest.raises(
        InputError,
        match=r"s.jsonl: no teacher score for query 'q2' and document 'd1' \(and 1 more pairs\)",
    ):
        teacher.score_pairs([q["q1"], q["q2"], q["q3"]], [text("d1"), text("d1"), text("d1")])
    with pytest.raises(ConfigError, match="needs the collection"):
        build_teacher(*parse_teacher_spec(f"file:{path}"))
    with pytest.raises(InputError, match="teacher scores file not found"):
        build_teacher(*parse_teacher_spec(f"file:{tmp_path / 'nope.jsonl'}"), collection=collection)


def test_training_rows_are_scored_by_ids_even_where_two_documents_share_a_text(tmp_path):
    from tests.conftest import DOCS
    from twotower.training.rows import TrainingRows
    from twotower.training.teacher_rows import teacher_scores_for

    twin = {**DOCS[1], "_id": "d2-twin"}  # d2's text under another id, scored differently
    root = write_collection(tmp_path / "c", docs=[*DOCS, twin], qrels=QRELS, split="train")
    collection = load_collection(root, "train")
    path = scores_file(
        tmp_path / "s.jsonl", [("q1", "d1", 9.0), ("q1", "d2", 1.5), ("q1", "d2-twin", 4.0)]
    )
    teacher = build_teacher(*parse_teacher_spec(f"file:{path}"), collection=collection)
    assert teacher.score_ids(collection, ["q1", "q1"], ["d2-twin", "d2"]).tolist() == [4.0, 1.5]
    with pytest.raises(InputError, match="no teacher score for query 'q2' and document 'd3'"):
        teacher.score_ids(collection, ["q2"], ["d3"])
    examples = [e for e in examples_from_collection(collection) if e.query_id == "q1"]
    table = {"q1": ["d2-twin"]}
    rows = TrainingRows(examples, collection, negatives=1, documents=table)
    scores = teacher_scores_for(teacher, [rows.drawn(0)], collection)
    assert scores == {("q1", "d1"): 9.0, ("q1", "d2-twin"): 4.0}  # by text it would be 1.5


def test_recipe_trains_from_mined_and_scored_files(tmp_path, tiny_model):
    collection = write_collection(tmp_path / "c")
    (collection / "qrels" / "train.tsv").write_text(QRELS)
    negatives, scores = tmp_path / "negatives.jsonl", tmp_path / "scores.jsonl"
    mined = runner.invoke(
        app,
        [
            "mine",
            "-d",
            str(collection),
            "--retriever",
            "dense",
            "-m",
            str(tiny_model),
            "--count",
            "2",
            "--window",
            "1:5",
            "-o",
            str(negatives),
        ],
    )
    assert mined.exit_code == 0, mined.output
    taught = runner.invoke(
        app,
        [
            "teach",
            "-d",
            str(collection),
            "--teacher",
            f"bi-encoder:{tiny_model}",
            "--pairs",
            str(negatives),
            "-o",
            str(scores),
        ],
    )
    assert taught.exit_code == 0, taught.output
    recipe_path = files_recipe(tmp_path, tiny_model, collection, negatives, scores)
    data = prepare_rows(load_recipe(recipe_path))
    table = {
        json.loads(line)["query_id"]: json.loads(line)["negative_ids"]
        for line in negatives.read_text().splitlines()
    }
    file_scores = read_scores(scores)
    assert data.info["negatives_file"]["queries"] == 3 and "mining" not in data.info
    for index in range(len(data.rows)):
        row = data.rows.drawn(index)
        example = row.example
        assert row.negative_keys[0] in table[example.query_id]
        expected = [
            file_scores[example.query_id][d] for d in (example.positive_id, *row.negative_keys)
        ]
        assert data.rows.teacher_row(row) == pytest.approx(expected)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(recipe_path), "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "model" / "TRAINING_DONE").is_file()


def test_a_pair_missing_from_the_scores_file_stops_the_run(tmp_path, tiny_model):
    collection = write_collection(tmp_path / "c")
    (collection / "qrels" / "train.tsv").write_text(QRELS)
    negatives = tmp_path / "negatives.jsonl"
    negatives.write_text(
        json.dumps({"query_id": "q1", "positive_ids": ["d1"], "negative_ids": ["d2"]}) + "\n"
    )
    scores = scores_file(tmp_path / "scores.jsonl", [("q1", "d1", 3.0)])
    recipe_path = files_recipe(tmp_path, tiny_model, collection, negatives, scores)
    result = runner.invoke(app, ["train", str(recipe_path), "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "no teacher score for query 'q1' and document 'd2'" in result.output


@pytest.mark.parametrize(
    ("negatives", "message"),
    [
        ("{source: file, count: 1}", "negatives.source: file and negatives.file go together"),
        ("{source: bm25, file: n.jsonl}", "negatives.source: file and negatives.file go together"),
        (
            "{source: file, file: n.jsonl, false_negative_margin: 3}",
            "filter it with `twotower mine",
        ),
    ],
)
def test_recipe_checks_the_file_source(tmp_path, negatives, message):
    path = tmp_path / "r.yaml"
    path.write_text(
        f"negatives: {negatives}\nteacher: {{kind: fusion, model: m}}\nloss: [{{loss: contrastive}}]\n"
    )
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)
