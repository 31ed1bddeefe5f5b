"""benchmarks/recipes_table.py on fake run folders: no training."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location(
        "recipes_table", ROOT / "benchmarks" / "recipes_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metrics(base: float) -> dict:
    return {
        "ndcg@10": base,
        "mrr@10": base - 0.01,
        "map@100": base - 0.02,
        "recall@10": base + 0.1,
        "recall@100": 0.9,
    }


def fake_run(runs: Path, name: str, trained: float, seconds: float = 600.0) -> None:
    results = []
    for data, shift in (("/x/scifact", 0.0), ("/x/cranfield", -0.3), ("/x/cisi", -0.25)):
        results += [
            {"system": "bm25", "data": data, "split": "test", "metrics": metrics(0.676 + shift)},
            {"system": "base", "data": data, "split": "test", "metrics": metrics(0.645 + shift)},
            {
                "system": "trained",
                "data": data,
                "split": "test",
                "metrics": metrics(trained + shift),
            },
        ]
    payload = {
        "recipe": {
            "name": name,
            "description": f"{name} loss\n",
            "model": {"name": "all-MiniLM-L6-v2"},
        },
        "train": {"steps": 28, "seconds": seconds, "examples": 919},
        "results": results,
    }
    (runs / name).mkdir(parents=True)
    (runs / name / "results.json").write_text(json.dumps(payload))


def recipes(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir()
    for name in names:
        (folder / f"{name}.yaml").write_text(f"# {name}\nname: {name}\n")
    return folder


def test_table_only_writes_section_and_json(tmp_path, table):
    runs = tmp_path / "runs"
    fake_run(runs, "mnrl", 0.70, seconds=630)
    fake_run(runs, "samtone", 0.71, seconds=660)
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text(
        "# Benchmarks\n\n## Speed\n\nkept\n\n<!-- recipes:start -->\nold table\n<!-- recipes:end -->\n\n## After\n\nalso kept\n"
    )
    out_json = tmp_path / "recipes_results.json"
    code = table.main(
        [
            "--table-only",
            "--recipes-dir",
            str(recipes(tmp_path, "mnrl", "samtone", "listwise")),
            "--runs-dir",
            str(runs),
            "--benchmarks",
            str(bench),
            "--json",
            str(out_json),
        ]
    )
    assert code == 0
    text = bench.read_text()
    assert "old table" not in text
    assert text.startswith("# Benchmarks\n\n## Speed\n\nkept\n\n<!-- recipes:start -->")
    assert text.rstrip().endswith("## After\n\nalso kept")
    assert text.count("<!-- recipes:start -->") == text.count("<!-- recipes:end -->") == 1
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert (
        "| Recipe" in lines
        and "SciFact NDCG@10 | MRR@10 | MAP@100 | Recall@10 | Cranfield NDCG@10 | CISI NDCG@10 | Train min"
        in lines["| Recipe"]
    )
    assert lines["| BM25"] == "| BM25 | 0.676 | 0.666 | 0.656 | 0.776 | 0.376 | 0.426 | – |"
    assert lines["| all-MiniLM-L6-v2 (not fine-tuned)"].startswith(
        "| all-MiniLM-L6-v2 (not fine-tuned) | 0.645 |"
    )
    assert (
        lines["| [mnrl](recipes/mnrl.yaml)"]
        == "| [mnrl](recipes/mnrl.yaml) | 0.700 | 0.690 | 0.680 | 0.800 | 0.400 | 0.450 | 10.5 |"
    )
    assert lines["| [samtone](recipes/samtone.yaml)"].endswith("| 11.0 |")
    assert "| [listwise](recipes/listwise.yaml) | not run |" in text
    saved = json.loads(out_json.read_text())
    assert [r["recipe"] for r in saved["recipes"]] == [
        "mnrl",
        "samtone",
        "listwise",
    ]  # the order of docs/methods.md
    mnrl = saved["recipes"][0]
    assert mnrl["scifact"]["ndcg@10"] == pytest.approx(0.70) and mnrl["cisi"][
        "ndcg@10"
    ] == pytest.approx(0.45)
    assert mnrl["train_minutes"] == pytest.approx(10.5) and mnrl["description"] == "mnrl loss"
    assert [b["recipe"] for b in saved["baselines"]] == [
        "BM25",
        "all-MiniLM-L6-v2 (not fine-tuned)",
    ]


def test_section_is_appended_or_file_created(tmp_path, table):
    runs = tmp_path / "runs"
    fake_run(runs, "mnrl", 0.70)
    folder = recipes(tmp_path, "mnrl")
    created = tmp_path / "new" / "BENCHMARKS.md"
    created.parent.mkdir()
    args = [
        "--table-only",
        "--recipes-dir",
        str(folder),
        "--runs-dir",
        str(runs),
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert table.main([*args, "--benchmarks", str(created)]) == 0
    assert created.read_text().startswith(
        "# Benchmarks\n\n<!-- recipes:start -->\n## Training recipes"
    )
    other = tmp_path / "OTHER.md"
    other.write_text("# Benchmarks\n\n## Losses\n\nmine\n")
    assert table.main([*args, "--benchmarks", str(other)]) == 0
    assert table.main([*args, "--benchmarks", str(other)]) == 0  # idempotent: one section
    text = other.read_text()
    assert text.startswith("# Benchmarks\n\n## Losses\n\nmine\n\n<!-- recipes:start -->")
    assert text.count("<!-- recipes:start -->") == 1 and text.endswith("<!-- recipes:end -->\n")


def test_only_selects_and_rejects_unknown(tmp_path, table):
    folder = recipes(tmp_path, "mnrl", "samtone", "listwise")
    assert [p.stem for p in table.recipe_paths(folder, ["samtone", "mnrl"])] == ["samtone", "mnrl"]
    with pytest.raises(SystemExit, match="no recipe nope"):
        table.recipe_paths(folder, ["nope"])


def test_runs_each_recipe_and_reuses_up_to_date_results(tmp_path, table, monkeypatch):
    folder = recipes(tmp_path, "mnrl", "samtone")
    runs = tmp_path / "runs"
    fake_run(runs, "mnrl", 0.70)
    # mnrl's results.json was written by the same recipe: reused without a run.
    from twotower.training.recipe import load_recipe

    payload = json.loads((runs / "mnrl" / "results.json").read_text())
    payload["recipe"] = load_recipe(folder / "mnrl.yaml").model_dump(mode="json")
    (runs / "mnrl" / "results.json").write_text(json.dumps(payload))
    calls = []

    def fake_run_one(path, run_dir, *, probe, device):
        calls.append((path.stem, run_dir, probe))
        return 1  # samtone fails

    monkeypatch.setattr(table, "run_one", fake_run_one)
    code = table.main(
        [
            "--recipes-dir",
            str(folder),
            "--runs-dir",
            str(runs),
            "--no-probe",
            "--benchmarks",
            str(tmp_path / "B.md"),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert calls == [("samtone", runs / "samtone", False)]
    assert code == 1
    assert "| [samtone](recipes/samtone.yaml) | failed |" in (tmp_path / "B.md").read_text()


def test_only_runs_a_subset_but_tabulates_every_recipe(tmp_path, table, monkeypatch):
    folder = recipes(tmp_path, "mnrl", "samtone", "listwise")
    runs = tmp_path / "runs"
    fake_run(runs, "mnrl", 0.70)
    calls = []

    def fake_run_one(path, run_dir, *, probe, device):
        calls.append(path.stem)
        fake_run(runs, path.stem, 0.72)
        return 0

    monkeypatch.setattr(table, "run_one", fake_run_one)
    code = table.main(
        [
            "--only",
            "samtone",
            "--recipes-dir",
            str(folder),
            "--runs-dir",
            str(runs),
            "--benchmarks",
            str(tmp_path / "B.md"),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0 and calls == ["samtone"]
    text = (tmp_path / "B.md").read_text()
    assert "| [mnrl](recipes/mnrl.yaml) | 0.700 |" in text
    assert "| [samtone](recipes/samtone.yaml) | 0.720 |" in text
    assert "| [listwise](recipes/listwise.yaml) | not run |" in text
