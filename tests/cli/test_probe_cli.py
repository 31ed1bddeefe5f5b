from typer.testing import CliRunner

from twotower.cli.main import app


def test_probe_writes_every_plot(tiny_collection, tiny_model, tmp_path):
    out = tmp_path / "probe"
    result = CliRunner().invoke(
        app,
        [
            "probe",
            "-m",
            str(tiny_model),
            "-m",
            str(tiny_model),
            "--label",
            "a",
            "--label",
            "b",
            "-d",
            str(tiny_collection),
            "-o",
            str(out),
            "--tsne-queries",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in (
        "tsne.png",
        "top1_similarity.png",
        "negative_sampling.png",
        "alignment_uniformity.png",
        "anisotropy.png",
        "probe.md",
        "probe.json",
    ):
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert (out / "tsne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_label_count_must_match(tiny_collection, tiny_model, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "probe",
            "-m",
            str(tiny_model),
            "--label",
            "a",
            "--label",
            "b",
            "-d",
            str(tiny_collection),
            "-o",
            str(tmp_path / "p"),
        ],
    )
    assert result.exit_code == 2 and "one --label per --model" in result.output
