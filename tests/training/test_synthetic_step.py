"""A recipe's synthetic step: generate (ict, no model), round-trip filter, train on the kept file."""

import json

import pytest

from twotower.errors import ConfigError
from twotower.training.pipeline import prepare_rows
from twotower.training.recipe import load_recipe
from twotower.training.synthetic_step import ensure_synthetic_queries, generated_path


def _ensure(recipe):
    return ensure_synthetic_queries(recipe.synthetic, recipe.train)


def synthetic_recipe(tmp_path, collection, *, synthetic, model="all-MiniLM-L6-v2"):
    path = tmp_path / "synthetic.yaml"
    queries = tmp_path / "out" / "queries.jsonl"
    path.write_text(
        f"model: {{name: {model}}}\n"
        f"train: {{data: {collection}, synthetic_queries: {queries}}}\n"
        f"synthetic: {json.dumps(synthetic)}\n"
        "optim: {batch_size: 2, epochs: 1, precision: fp32}\n"
    )
    return path, queries


def test_the_step_generates_filters_and_the_rows_train_on_the_kept_queries(
    tmp_path, tiny_collection
):
    synthetic = {"generator": "ict", "per_doc": 2, "filter": {"retrievers": ["bm25"], "top_k": 2}}
    path, queries = synthetic_recipe(tmp_path, tiny_collection, synthetic=synthetic)
    recipe = load_recipe(path)
    info = _ensure(recipe)
    generated = [json.loads(x) for x in generated_path(queries).read_text().splitlines()]
    kept = [json.loads(x) for x in queries.read_text().splitlines()]
    assert len(generated) == info["generation"]["written"] > 0
    assert 0 < len(kept) <= len(generated) and all(k["filter"]["source_rank"] <= 2 for k in kept)
    assert info["filter"]["keep_rates"][-1]["retrieval"] == len(kept)
    rows = prepare_rows(recipe).rows
    assert len(rows) == len(kept)  # one training row per kept query, with no qrels read
    # The same settings reuse the file; other settings are refused with one line.
    assert _ensure(load_recipe(path)) == {"reused": str(queries)}
    other, _ = synthetic_recipe(tmp_path, tiny_collection, synthetic={**synthetic, "seed": 3})
    with pytest.raises(ConfigError, match=r"made with other synthetic settings \(seed\)"):
        _ensure(load_recipe(other))


@pytest.mark.parametrize(
    ("synthetic", "extra", "message"),
    [
        ({"generator": "ict", "filter": {"retrievers": ["dense"]}}, "", r"retriever 'dense'"),
        ({"generator": "ict", "filter": {"percentile": 25}}, "", r"percentile cuts on the teacher"),
        ({"generator": "ict", "sample": 2, "limit": 2}, "", r"sample or limit"),
        ({"generator": "smollm2", "types": ["questions", "clams"]}, "", r"did you mean 'claims'"),
    ],
)
def test_a_synthetic_section_that_cannot_work_is_refused_when_the_recipe_loads(
    tmp_path, tiny_collection, synthetic, extra, message
):
    path, _ = synthetic_recipe(tmp_path, tiny_collection, synthetic=synthetic)
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_a_generator_needs_a_file_to_write(tmp_path, tiny_collection):
    path = tmp_path / "r.yaml"
    path.write_text(f"train: {{data: {tiny_collection}}}\nsynthetic: {{generator: ict}}\n")
    with pytest.raises(ConfigError, match=r"synthetic.generator: .*train.synthetic_queries"):
        load_recipe(path)


def test_the_recipes_filter_rules_reach_the_filter(tmp_path, tiny_collection):
    rules = {"first_stage_rule": "fused", "percentile_of": "best", "per_type": False}
    synthetic = {"generator": "ict", "filter": {"retrievers": ["bm25"], "top_k": 2, **rules}}
    path, queries = synthetic_recipe(tmp_path, tiny_collection, synthetic=synthetic)
    info = _ensure(load_recipe(path))
    summary = info["filter"]
    assert (summary["first_stage"], summary["percentile_of"], summary["percentile_per_type"]) == (
        "fused",
        "best",
        False,
    )
