"""One round of ANCE/DANCE negative refresh, computed from a snapshot of the weights in training.

ANCE (Xiong et al. 2021) draws hard negatives from the model being trained: re-encode the corpus
with the current weights, search it with the training queries, and sample negatives from a rank
window of the result; DANCE (Li et al. 2021) does the same for negative queries, searching the
training queries with each positive document. A round here:

1. loads the snapshot (a sentence-transformers folder) and encodes the corpus with its document
   tower (or reads the frozen index's embeddings) and the training queries with its query tower;
2. searches exactly (:func:`twotower.retrieval.dense.exact_run`), takes each query's rank window
   less its positives, and keeps the first ``count`` of the query's shuffled candidates (the one
   sampling rule of :mod:`twotower.negatives.mine`, its own document left out where queries are
   documents of the corpus, as there);
3. for DANCE, searches the training queries with each positive document, never keeping a query
   that has the document as a positive;
4. measures the positives' ranks in the ranking it searched (a positive beyond the searched
   depth counts as one place past it) and the overlap with the previous round;
5. writes ``negatives.jsonl`` (and ``queries.jsonl``), ``stats.json`` and, last, ``manifest.json``
   (the SHA-256 of each file, and a checksum of its own) into a temporary folder that is then
   renamed: a reader never sees half a round, and a damaged one is set aside, never read.

Run as ``python -m twotower.training.refresh_round ROUND_REQUEST.json`` by the refresher; the
process exits when its parent (the trainer) dies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from twotower.data.collection import Collection
from twotower.data.files import atomic_write, read_manifest, write_manifest
from twotower.models.encoder import Encoder, load_sentence_transformer
from twotower.negatives.io import read_negatives, write_negatives
from twotower.negatives.mine import (
    RankWindow,
    first_of_each,
    shuffled_candidates,
    table_from_kept,
    training_query_ids,
)
from twotower.negatives.table import NegativesTable
from twotower.retrieval import Run
from twotower.retrieval.ann import IndexSettings, search_run
from twotower.retrieval.dense import exact_run
from twotower.training.examples import training_collection
from twotower.training.recipe_sections import TrainDataConfig

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ROUND_PREFIX = "round-"


@dataclass
class RoundRequest:
    """Everything a round needs, written by the trainer as JSON for the round's process."""

    generation: int
    step: int  # the training step of the snapshot's weights
    snapshot: str  # sentence-transformers folder of the weights
    train: dict[str, Any]  # the recipe's train section (TrainDataConfig): whose queries refresh
    rounds_dir: str
    query_ids: list[str]  # the training queries this round refreshes
    negatives: int  # hard negatives kept per query (0: none)
    negative_queries: int  # negative queries kept per positive document (0: none)
    window: tuple[int, int]
    negative_query_window: tuple[int, int]
    depth: int
    seed: int
    precision: str = "auto"
    max_length: int | None = None
    batch_size: int = 64
    threads: int | None = None
    device: str | None = None
    frozen_documents: str | None = None  # .npy of a frozen index's corpus embeddings
    previous: str | None = None  # the previous round's folder (for the overlap)
    index: IndexSettings = field(default_factory=IndexSettings)  # how the round searches

    def __post_init__(self) -> None:
        if isinstance(self.index, dict):  # read back from the request's JSON
            self.index = IndexSettings(**self.index)


@dataclass
class RoundStats:
    generation: int
    step: int
    started: float
    finished: float = 0.0
    queries: int = 0
    documents_encoded: int = 0
    queries_encoded: int = 0
    encode_s: float = 0.0
    search_s: float = 0.0
    # Ranks in the searched top `depth`: a positive beyond it counts as depth + 1, so with any
    # beyond (positives_beyond_depth) the mean and median are lower bounds.
    positive_rank_mean: float = 0.0
    positive_rank_median: float = 0.0
    positives_beyond_depth: int = 0
    overlap_with_previous: float | None = None
    negatives: int = 0
    negative_queries: int = 0
    notes: list[str] = field(default_factory=list)


def round_dir(rounds_dir: Path, generation: int) -> Path:
    return rounds_dir / f"{ROUND_PREFIX}{generation:05d}"


def complete_rounds(rounds_dir: Path) -> list[Path]:
    """Published rounds (a manifest, written last, inside a renamed folder), oldest first."""
    if not rounds_dir.is_dir():
        return []
    found = [
        p
        for p in rounds_dir.glob(f"{ROUND_PREFIX}*")
        if p.is_dir() and p.name[len(ROUND_PREFIX) :].isdigit() and (p / MANIFEST).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(ROUND_PREFIX) :]))


def read_round(folder: Path, collection: Collection):
    """(manifest, documents table or None, queries table or None) of a published round; None if
    the round is damaged (a file that does not match the manifest's checksum): it is renamed
    ``*.damaged``, reported in one line, and training keeps the negatives it has."""
    manifest, problem = read_manifest(folder / MANIFEST, complete=True)
    if problem is not None or manifest is None:
        aside = folder.with_name(folder.name + ".damaged")
        shutil.rmtree(aside, ignore_errors=True)
        with contextlib.suppress(OSError):  # another rank of a torchrun job set it aside first
            folder.rename(aside)
        log.warning("%s: damaged refresh round (%s), set aside as %s", folder, problem, aside.name)
        return None
    documents = queries = None
    if (folder / "negatives.jsonl").is_file():
        documents = read_negatives(folder / "negatives.jsonl", collection, kind="documents")
    if (folder / "queries.jsonl").is_file():
        queries = read_negatives(folder / "queries.jsonl", collection, kind="queries")
    return manifest, documents, queries


def positive_ranks(run: Run, positives: Mapping[str, Sequence[str]], depth: int) -> list[int]:
    """The 1-based rank of every positive of every query in the searched ``run``, the ranking
    the windows are cut from; a positive not in its top ``depth`` counts as ``depth + 1``."""
    ranks: list[int] = []
    for query, documents in positives.items():
        place = {d: rank for rank, d in enumerate(islice(run.get(query, {}), depth), start=1)}
        ranks += [place.get(d, depth + 1) for d in documents]
    return ranks


def _overlap(new: NegativesTable, previous: NegativesTable | None) -> float | None:
    if previous is None:
        return None
    shares = [
        len(set(negs) & set(previous.get(anchor))) / len(negs)
        for anchor, negs in new.negatives.items()
        if negs and anchor in previous
    ]
    return float(np.mean(shares)) if shares else None


def compute_round(request: RoundRequest, collection: Collection) -> tuple[dict, RoundStats]:
    """The round's tables ({"documents": ..., "queries": ...}) and statistics."""
    stats = RoundStats(request.generation, request.step, started=time.time())
    model = load_sentence_transformer(request.snapshot, device=request.device)
    encoder = Encoder(
        model,
        batch_size=request.batch_size,
        max_length=request.max_length,
        precision=request.precision,  # type: ignore[arg-type]
        show_progress=False,
        name=f"snapshot@{request.step}",
        # A new snapshot is a new export (~2.5 s for MiniLM): it pays for a corpus, not for
        # a round that encodes only its queries.
        backend="torch" if request.frozen_documents else "auto",
    )
    corpus = collection.corpus
    training = training_query_ids(collection)
    started = time.perf_counter()
    if request.frozen_documents:
        documents = np.load(request.frozen_documents, mmap_mode="r")
        stats.notes.append("frozen document tower: the corpus is not re-encoded")
    else:
        documents = encoder.encode_documents(corpus.texts)
        stats.documents_encoded = len(corpus.texts)
    needs_all = request.negative_queries > 0
    encoded_ids = training if needs_all else list(request.query_ids)
    queries = encoder.encode_queries([collection.queries[q] for q in encoded_ids])
    stats.queries_encoded = len(encoded_ids)
    stats.encode_s = time.perf_counter() - started
    row_of = {q: i for i, q in enumerate(encoded_ids)}
    subset = [row_of[q] for q in request.query_ids]

    started = time.perf_counter()
    tables: dict[str, NegativesTable | None] = {"documents": None, "queries": None}
    positives = {
        q: [d for d in sorted(collection.positives(q)) if d in corpus.index]
        for q in request.query_ids
    }
    index = request.index
    # Searched even without negatives to keep: the positives' ranks are read from it.
    run = search_run(
        request.query_ids,
        queries[subset],
        corpus.ids,
        documents,
        request.depth,
        index,
        # As first mining: a query that is a document of the corpus never ranks itself.
        ignore_identical_ids=collection.ids_are_shared(),
    )
    if index.approximate:
        stats.notes.append(f"{index.type} index (FAISS): the candidates are approximate")
    if request.negatives:
        window = RankWindow(*request.window)
        pools = {
            q: shuffled_candidates(run.get(q, {}), window, collection.positives(q), request.seed, q)
            for q in request.query_ids
        }
        table = table_from_kept(first_of_each(pools, request.negatives), positives)
        tables["documents"], stats.negatives = table, table.total()
    if request.negative_queries:
        window = RankWindow(*request.negative_query_window)
        positive_of = collection.judging_queries()
        doc_ids = list(dict.fromkeys(d for q in request.query_ids for d in positives[q]))
        rows = [corpus.index[d] for d in doc_ids]
        depth = min(window.end, len(encoded_ids))
        reverse = exact_run(doc_ids, np.asarray(documents[rows]), encoded_ids, queries, depth)
        pools = {
            d: shuffled_candidates(
                reverse.get(d, {}), window, set(positive_of.get(d, [])), request.seed, d
            )
            for d in doc_ids
        }
        query_positives = {d: list(positive_of.get(d, [])) for d in doc_ids}
        table = table_from_kept(
            first_of_each(pools, request.negative_queries), query_positives, "queries"
        )
        tables["queries"], stats.negative_queries = table, table.total()
    # From the search, not the whole corpus rescored: that would undo an index's saving.
    ranks = positive_ranks(run, positives, request.depth)
    stats.search_s = time.perf_counter() - started
    stats.queries = len(request.query_ids)
    stats.positive_rank_mean = float(np.mean(ranks)) if ranks else 0.0
    stats.positive_rank_median = float(np.median(ranks)) if ranks else 0.0
    stats.positives_beyond_depth = sum(rank > request.depth for rank in ranks)
    if stats.positives_beyond_depth:
        stats.notes.append(
            f"positives beyond the searched depth ({request.depth}) count as rank"
            f" {request.depth + 1}: the positives' mean and median ranks are lower bounds"
        )
    previous_round = read_round(Path(request.previous), collection) if request.previous else None
    if previous_round is not None and tables["documents"] is not None:
        stats.overlap_with_previous = _overlap(tables["documents"], previous_round[1])
    return tables, stats


def publish_round(request: RoundRequest, tables: dict, stats: RoundStats) -> Path:
    """Write the round into a temporary folder, the manifest last, then rename it into place."""
    rounds = Path(request.rounds_dir)
    final = round_dir(rounds, request.generation)
    temporary = rounds / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    if tables["documents"] is not None:
        write_negatives(temporary / "negatives.jsonl", tables["documents"])
    if tables["queries"] is not None:
        write_negatives(temporary / "queries.jsonl", tables["queries"])
    stats.finished = time.time()
    with atomic_write(temporary / "stats.json") as handle:
        handle.write(json.dumps(asdict(stats), indent=2) + "\n")
    fields = {"generation": request.generation, "step": request.step}
    write_manifest(temporary / MANIFEST, fields, sorted(temporary.iterdir()))
    os.replace(temporary, final)
    return final


def _exit_with_parent(parent: int) -> None:
    """Leave at once when the trainer that started this round is gone (even after SIGKILL)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str]) -> int:
    request_path, parent = Path(argv[0]), int(argv[1])
    _exit_with_parent(parent)
    data: dict[str, Any] = json.loads(request_path.read_text())
    request = RoundRequest(**data)
    if request.threads:
        import torch

        torch.set_num_threads(request.threads)
    collection = training_collection(TrainDataConfig(**request.train))
    tables, stats = compute_round(request, collection)
    publish_round(request, tables, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
