"""Every recipe in recipes/ trains and evaluates for two steps on the tiny collection and model,
so a recipe that cannot run (a bad combination, a crash before the first step) cannot land."""

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_collection
from twotower.cli.main import app
from twotower.training.recipe import Recipe, load_recipe

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))
# Words of the tiny model's vocabulary (tests/conftest.py): any other word is [UNK] to it.
WORDS = (
    "cats small domesticated felines purr dogs loyal animals bark strangers rust systems"
    " programming language safety python popular machine learning tea brewed leaves coffee seeds"
).split()


def write_smoke_collection(root: Path) -> Path:
    """16 documents of six words, each sharing words with several others (mining finds
    candidates for every query), and 8 queries, every other one with two positives; q1 and q3
    share no word with their positive (weak queries: the weak-query filter's percentile of the
    best scores drops them, ahead of later queries' rows). The shared tiny collection is too
    small: a row of a positive and three negatives takes four of its six documents, so no
    batch of two distinct rows exists."""
    docs = [
        {"_id": f"d{i}", "title": "", "text": " ".join(WORDS[(i + 5 * j) % 24] for j in range(6))}
        for i in range(16)
    ]
    weak = {1: "tea cats python", 3: "bark seeds coffee"}  # no word of d2, d6
    queries = [
        {"_id": f"q{i}", "text": weak.get(i) or " ".join(docs[2 * i]["text"].split()[:3])}
        for i in range(8)
    ]
    lines = ["query-id\tcorpus-id\tscore"]
    for i in range(8):
        lines += [f"q{i}\td{2 * i}\t1"] + ([f"q{i}\td{2 * i + 1}\t1"] if i % 2 == 0 else [])
    qrels = "\n".join(lines) + "\n"
    root = write_collection(root, docs, queries, qrels)
    (root / "qrels" / "train.tsv").write_text(qrels)
    return root


@pytest.fixture
def smoke_collection(tmp_path):
    return write_smoke_collection(tmp_path / "smoke")


def tiny_overrides(recipe: Recipe, model: Path, collection: Path, tmp_path: Path) -> list[str]:
    """``--set`` overrides that keep the recipe's method and shrink everything else: the tiny
    model wherever a model is named, the smoke collection, rank windows inside its 16
    documents, two steps of two rows, a refresh round after the first step, the model-free ict
    generator instead of an LLM."""
    sets = [
        f"model.name={model}",
        f"train.data={collection}",
        "optim.batch_size=2",
        "optim.max_steps=2",
        "optim.save_steps=100",
        "optim.logging_steps=1",
        "optim.precision=fp32",
        f"eval.collections=[{collection}]",
        "eval.probe=false",
    ]
    negatives = recipe.negatives
    if negatives.model:
        sets.append(f"negatives.model={model}")
    if negatives.source != "none":
        sets.append("negatives.rank_window=[1,10]")
    if negatives.negative_queries:
        sets.append("negatives.negative_query_window=[1,6]")
    if recipe.teacher.model:
        sets.append(f"teacher.model={model}")
    if recipe.refresh.mode != "off":
        # sync: an async round would still be running when the second step ends.
        sets += ["refresh.mode=sync", "refresh.every_steps=1", "refresh.depth=16"]
    if recipe.synthetic.generator:
        sets += [
            f"train.synthetic_queries={tmp_path / 'synthetic' / 'queries.jsonl'}",
            "synthetic.generator=ict",
            "synthetic.sample=null",
            "synthetic.limit=null",
        ]
        screen = recipe.synthetic.filter
        if screen is not None:  # the recipe's kinds of retriever and teacher, on the tiny model
            retrievers = [
                spec if spec == "bm25" else f"{spec.split(':')[0]}:{model}"
                for spec in screen.retrievers
            ]
            sets += [
                f"synthetic.filter.retrievers={json.dumps(retrievers)}",
                "synthetic.filter.top_k=3",
            ]
            if screen.teacher:
                sets.append(f"synthetic.filter.teacher={screen.teacher.split(':')[0]}:{model}")
    else:
        sets.append("train.split=train")
    return sets


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_recipe_trains_two_steps_and_evaluates(
    recipe, tmp_path, tiny_model, smoke_collection
):
    out = tmp_path / "run"
    original = load_recipe(recipe)
    sets = tiny_overrides(original, tiny_model, smoke_collection, tmp_path)
    arguments = ["run", str(recipe), "--output-dir", str(out), "--no-probe"]
    result = CliRunner().invoke(app, [*arguments, *(f"--set={s}" for s in sets)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "model" / "TRAINING_DONE").read_text())["steps"] == 2
    losses = [line["loss"] for line in _lines(out / "train_log.jsonl") if "loss" in line]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    results = json.loads((out / "results.json").read_text())["results"]
    trained = [r for r in results if r["system"].startswith("trained")]
    assert trained and all(math.isfinite(v) for r in trained for v in r["metrics"].values())
    info = json.loads((out / "data.json").read_text())
    if original.synthetic.generator:
        assert info["synthetic_step"]["generation"]["written"] > 0
    if original.refresh.mode != "off":  # the round after step 1, used by step 2
        assert [r["adopted_at_step"] for r in _lines(out / "refresh_log.jsonl")] == [1]
