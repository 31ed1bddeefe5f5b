"""``twotower probe``: the two towers' embedding spaces, side by side, as plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twotower.analysis import run_probe
from twotower.analysis.encode import tower_embeddings
from twotower.cli.common import (
    BatchSizeOpt,
    DataDirOpt,
    DeviceOpt,
    SeedOpt,
    user_errors,
)
from twotower.data import load_collection
from twotower.models import Encoder


def short_label(name: str) -> str:
    return Path(name).name or name


@user_errors
def probe_command(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="model name or folder; repeatable")
    ],
    data: Annotated[str, typer.Option("--data", "-d", help="collection name or folder")],
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    output: Annotated[
        Path, typer.Option("--output", "-o", help="folder for PNGs, probe.md, probe.json")
    ] = Path("probe"),
    label: Annotated[
        list[str] | None, typer.Option(help="a label per --model (default: folder or model name)")
    ] = None,
    temperature: Annotated[
        float,
        typer.Option(min=1e-6, help="softmax temperature of the negative-sampling view"),
    ] = 0.05,
    tsne: Annotated[bool, typer.Option("--tsne/--no-tsne", help="fit t-SNE (slowest part)")] = True,
    tsne_queries: Annotated[int, typer.Option(min=2, help="queries sampled for t-SNE")] = 300,
    seed: SeedOpt = 0,
    batch_size: BatchSizeOpt = 64,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Probe embedding spaces: t-SNE, top-1 similarity, alignment/uniformity, anisotropy, DANCE's view."""

    labels = list(label or [])
    if labels and len(labels) != len(model):
        raise typer.BadParameter(f"give one --label per --model ({len(model)}), got {len(labels)}")
    labels = labels or [short_label(m) for m in model]
    collection = load_collection(data, split, data_dir)
    towers = [
        tower_embeddings(
            Encoder.from_name(name, device=device, batch_size=batch_size), collection, lab
        )
        for name, lab in zip(model, labels, strict=True)
    ]
    result = run_probe(
        towers,
        collection.qrels,
        output,
        seed=seed,
        temperature=temperature,
        tsne=tsne,
        tsne_queries=tsne_queries,
        exclude_same_id=collection.ids_are_shared(),
        data=collection.name,
        split=split,
    )
    console = Console()
    console.print(result.summary_markdown())
    console.print(f"wrote {', '.join(sorted(result.files))} to {output}")
