"""Every numeric option of every command, given 0 and -1: it runs, or it stops with exit
status 2 and one line naming the option — never a traceback."""

import json

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from tests.conftest import QRELS, write_collection
from twotower.cli.main import app

NUMERIC = (int, float)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("options")
    collection = write_collection(root / "c")
    (collection / "qrels" / "train.tsv").write_text(QRELS)
    negatives = root / "negatives.jsonl"
    negatives.write_text(
        json.dumps({"query_id": "q1", "positive_ids": ["d1"], "negative_ids": ["d2"]}) + "\n"
    )
    return {
        "model": str(tiny_model),
        "data": str(collection),
        "pairs": str(negatives),
        "root": root,
    }


def base_args(command: str, inputs) -> list[str]:
    out = str(inputs["root"] / f"out-{command}")
    model, data = inputs["model"], inputs["data"]
    return {
        "eval": ["eval", "-m", model, "-d", data, "-o", out + ".json"],
        "mine": ["mine", "-d", data, "-m", model, "--retriever", "dense", "-o", out + ".jsonl"],
        "teach": [
            "teach",
            "-d",
            data,
            "--teacher",
            f"bi-encoder:{model}",
            "--pairs",
            inputs["pairs"],
            "-o",
            out + ".jsonl",
        ],
        "probe": ["probe", "-m", model, "-d", data, "--no-tsne", "-o", out],
    }[command]


def numeric_options():
    group = get_command(app)
    for name in ("eval", "mine", "teach", "probe"):
        for param in group.commands[name].params:
            if param.type_descriptor.annotation in NUMERIC:
                yield name, param.opts[0]


CASES = [(c, o, v) for c, o in numeric_options() for v in ("0", "-1")]


def test_every_command_has_numeric_options_to_walk():
    assert {c for c, _, _ in CASES} == {"eval", "mine", "teach", "probe"}
    assert ("eval", "--batch-size", "0") in CASES and ("probe", "--temperature", "-1") in CASES


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_a_numeric_value_runs_or_is_one_line_naming_the_option(inputs, command, option, value):
    result = CliRunner().invoke(app, [*base_args(command, inputs), option, value])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and option in errors[0], result.output


@pytest.mark.parametrize("value", ["100", "-1"])
def test_every_percentile_option_has_the_one_bound(inputs, value):
    """[0, 100) for --drop-below (teach), --percentile (filter) and the library they call."""
    from twotower.errors import ConfigError
    from twotower.teachers.normalize import keep_queries

    result = CliRunner().invoke(app, [*base_args("teach", inputs), "--drop-below", value])
    assert result.exit_code == 2 and "--drop-below must be in [0, 100)" in result.output
    kept = inputs["root"] / "kept.jsonl"
    kept.write_text(json.dumps({"query": "cats", "doc_id": "d1"}) + "\n")
    result = CliRunner().invoke(
        app,
        [
            "filter",
            str(kept),
            "-d",
            inputs["data"],
            "--percentile",
            value,
            "-o",
            str(kept) + ".out",
        ],
    )
    assert result.exit_code == 2 and "--percentile must be in [0, 100)" in result.output
    with pytest.raises(ConfigError, match=r"percentile must be in \[0, 100\)"):
        keep_queries({"q": {"d": 1.0}}, float(value))
