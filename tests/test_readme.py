"""The README's Python examples run as written, on the tiny model and collection.

Only three names change: the model, the recipe and the collection (a CPU test cannot fine-tune
MiniLM on SciFact); everything else is executed as the README shows it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_python_examples_run(
    tmp_path, tiny_model, train_collection, monkeypatch, capsys
):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        f"model: {{name: {tiny_model}}}\n"
        f"train: {{data: {train_collection}, split: train}}\n"
        "loss: [{loss: contrastive, preset: mnrl}]\n"
        "optim: {batch_size: 2, epochs: 1, precision: fp32}\n"
        f"eval: {{collections: [{train_collection}], probe: false}}\n"
    )
    substitutions = {
        '"all-MiniLM-L6-v2"': repr(str(tiny_model)),
        '"recipes/quickstart.yaml"': repr(str(recipe)),
        '"scifact"': repr(str(train_collection)),
    }
    blocks = python_blocks()
    assert len(blocks) == 2
    code = []
    for block in blocks:
        for old, new in substitutions.items():
            block = block.replace(old, new)
        code.append(block)
    for old, new in substitutions.items():
        assert sum(block.count(new) for block in code) == 1, old
    monkeypatch.chdir(tmp_path)  # the examples write runs/...

    st_script, recipe_script = ({"__name__": "readme"} for _ in code)
    exec(compile(code[0], "README.md (sentence-transformers)", "exec"), st_script)
    exec(compile(code[1], "README.md (recipe)", "exec"), recipe_script)

    saved = tmp_path / "runs" / "st-mnrl-dual" / "model"
    card = (saved / "README.md").read_text()
    assert "- loss:InfoNCELoss" in card and "Contrastive Dual Learning" in card
    trained, base = (SentenceTransformer(str(p), device="cpu") for p in (saved, tiny_model))
    assert not np.allclose(trained.encode(["cats"]), base.encode(["cats"]))  # two steps taken

    payload = recipe_script["payload"]
    assert payload["recipe"]["optim"]["epochs"] == 2  # the override reached the recipe
    assert (tmp_path / "runs" / "quickstart-2-epochs" / "report.md").is_file()
    printed = capsys.readouterr().out.splitlines()
    metrics = ["ndcg@10", "mrr@10", "map@100", "recall@10", "recall@100"]
    comparison = [line.split()[1] for line in printed if "→" in line]
    assert comparison == metrics
    systems = [line.split()[0] for line in printed if "→" not in line and line.strip()]
    assert systems[-2:] == ["bm25", "runs/quickstart-2-epochs/model"]
