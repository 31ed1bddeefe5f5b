from pathlib import Path

import pytest

from twotower.errors import ConfigError
from twotower.training.recipe import load_recipe

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipe_loads_and_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert path.read_text().lstrip().startswith("#"), (
        "each recipe opens with a comment naming its paper"
    )
    from twotower.losses.spec import build_loss

    build_loss(recipe.loss)


@pytest.mark.parametrize(("name", "in_batch"), [("ance", False), ("dance", True)])
def test_a_refresh_recipes_header_says_whether_it_keeps_in_batch_negatives(name, in_batch):
    path = RECIPES[0].parent / f"{name}.yaml"
    header = " ".join(
        line.lstrip("# ") for line in path.read_text().splitlines() if line.startswith("#")
    )
    loss = load_recipe(path).loss[0]
    assert loss.in_batch_negatives is in_batch and loss.share_hard_negatives is in_batch
    assert ("in-batch negatives on both sides" if in_batch else "no in-batch negatives") in header


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_typo_names_file_line_key_and_nearest(tmp_path):
    path = write(tmp_path, "model:\n  name: x\n  max_documnt_length: 128\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    assert str(info.value).startswith(
        f"{path}:3: unknown key 'model.max_documnt_length' (did you mean 'model.max_document_length'?)"
    )


def test_unknown_section(tmp_path):
    with pytest.raises(
        ConfigError, match=r"r.yaml:1: unknown key 'optimizer' \(did you mean 'optim'\?\)"
    ):
        load_recipe(write(tmp_path, "optimizer: {learning_rate: 1}\n"))


def test_loss_typo_is_reported_with_entry(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"loss\[0\] \(contrastive\): unknown key 'temprature' \(did you mean 'temperature'\?\)",
    ):
        load_recipe(write(tmp_path, "loss:\n  - {loss: contrastive, temprature: 0.1}\n"))


def test_bad_value(tmp_path):
    with pytest.raises(
        ConfigError, match=r"r.yaml:2: optim.batch_size: Input should be greater than 0"
    ):
        load_recipe(write(tmp_path, "optim:\n  batch_size: 0\n"))


def test_contradiction_teacher_loss_without_teacher(tmp_path):
    with pytest.raises(ConfigError, match=r"margin_mse.*needs teacher scores"):
        load_recipe(
            write(tmp_path, "negatives: {source: bm25, count: 1}\nloss:\n  - {loss: margin_mse}\n")
        )


def test_overrides(tmp_path):
    recipe = load_recipe(
        write(tmp_path, "optim: {batch_size: 8}\n"),
        [
            "optim.batch_size=4",
            "negatives.rank_window=[5, 50]",
            "model.name=foo",
            "eval.collections=[cisi]",
        ],
    )
    assert recipe.optim.batch_size == 4
    assert recipe.negatives.rank_window == (5, 50)
    assert recipe.model.name == "foo" and recipe.eval.collections == ["cisi"]


def test_override_typo(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown key 'optim.batchsize' \(did you mean 'optim.batch_size'\?\)"
    ):
        load_recipe(write(tmp_path, "name: r\n"), ["optim.batchsize=4"])


def test_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"r.yaml:3: invalid YAML"):
        load_recipe(write(tmp_path, "model:\n  name: [unclosed\n"))


def test_one_index_setting_for_mining_evaluation_and_refresh(tmp_path, monkeypatch):
    from twotower.retrieval.ann import IndexSettings
    from twotower.training import recipe_sections as recipe_module

    monkeypatch.setattr(recipe_module, "faiss_available", lambda: True)
    path = tmp_path / "r.yaml"
    path.write_text(
        "negatives: {source: dense, count: 1, index: ivf, ivf_lists: 64, ivf_probe: 8}\n"
        "eval: {index: flat}\n"
    )
    recipe = load_recipe(path)
    assert recipe.negatives.index_settings() == IndexSettings("ivf", lists=64, probe=8)
    assert recipe.eval.index_settings() == IndexSettings("flat")
    assert recipe.refresh.index_settings() == IndexSettings("exact")
    path.write_text("negatives: {source: bm25, count: 1, index: hnsw}\n")
    with pytest.raises(ConfigError, match="negatives.index searches dense embeddings"):
        load_recipe(path)
    monkeypatch.setattr(recipe_module, "faiss_available", lambda: False)
    path.write_text("eval: {index: hnsw}\n")
    with pytest.raises(ConfigError, match=r"eval.index: .*pip install faiss-cpu"):
        load_recipe(path)


def test_a_rule_across_sections_points_at_the_line_of_the_key_it_names(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nteacher:\n  kind: none\n  drop_below_percentile: 25\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:4: teacher\.drop_below_percentile filters"):
        load_recipe(path)
