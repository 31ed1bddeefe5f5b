"""The ``--index`` options of the commands that search a corpus (``eval``, ``mine``)."""

from __future__ import annotations

from typing import Annotated

import typer

from twotower.retrieval.ann import IndexSettings, IndexType, require_faiss

IndexOpt = Annotated[
    IndexType,
    typer.Option(
        help="how dense embeddings are searched: exact (default: FAISS's k-NN where installed,"
        " else torch's), or a FAISS index: flat (exact), ivf or hnsw (approximate, for large"
        " corpora; their recall against exact search is reported)"
    ),
]
IvfListsOpt = Annotated[
    int | None, typer.Option(min=1, help="ivf: k-means cells (default 4·√corpus size)")
]
IvfProbeOpt = Annotated[int, typer.Option(min=1, help="ivf: cells visited per query")]
HnswNeighborsOpt = Annotated[int, typer.Option(min=2, help="hnsw: links per node")]


def index_settings(index: IndexType, ivf_lists: int | None, ivf_probe: int, hnsw_neighbors: int):
    """The settings the options name, refused in one line (exit 2) where FAISS is missing."""
    if index != "exact":
        require_faiss("--index")
    return IndexSettings(index, lists=ivf_lists, probe=ivf_probe, neighbors=hnsw_neighbors)
