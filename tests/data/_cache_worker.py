"""One process of tests/data/test_concurrent_caches.py: waits for a start signal, then encodes,
mines or scores against the shared cache ($TWOTOWER_CACHE) and writes what it did as JSON.

``python -m tests.data._cache_worker MODE FOLDER NAME [OPTIONS as JSON]``: writes
``FOLDER/NAME.ready`` when loaded, starts when ``FOLDER/go`` exists, and writes
``FOLDER/NAME.json`` when done. Every call of the encoder (or teacher batch) first sleeps
``delay`` seconds, so two processes overlap, and is counted.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path


def _wait_for_go(folder: Path, name: str) -> None:
    (folder / f"{name}.ready").touch()
    while not (folder / "go").exists():
        time.sleep(0.01)


def _slow_encoder(options: dict, folder: Path, name: str):
    from twotower.models import Encoder

    encoder = Encoder.from_name(options["model"], device="cpu", show_progress=False)
    real = encoder.encode
    calls: list[int] = []

    def encode(texts, *, task, desc=None, adapted=True):
        (folder / f"{name}.encoding").touch()  # this process holds the entry's lock
        time.sleep(options.get("delay", 0.0))
        calls.append(len(texts))
        return real(texts, task=task, adapted=adapted)

    encoder.encode = encode
    return encoder, calls


def main(mode: str, folder: Path, name: str, options: dict) -> None:
    import numpy as np

    result: dict = {}
    if mode == "encode":
        import twotower.models.embedding_cache as cache
        from twotower.data import load_collection

        cache.RESUME_CHUNK = options.get("chunk", cache.RESUME_CHUNK)
        corpus = load_collection(options["collection"]).corpus
        encoder, calls = _slow_encoder(options, folder, name)
        _wait_for_go(folder, name)
        embeddings, cached = cache.encode_corpus(encoder, corpus)
        np.save(folder / f"{name}.npy", np.asarray(embeddings))
        result = {"cached": cached, "calls": calls}
    elif mode == "mine":
        from twotower.data import load_collection
        from twotower.negatives import DenseRetriever, RankWindow, mine_negatives

        collection = load_collection(options["collection"])
        encoder, calls = _slow_encoder(options, folder, name)
        _wait_for_go(folder, name)
        table, stats = mine_negatives(
            collection, DenseRetriever(encoder), window=RankWindow(1, 6), count=2, seed=0
        )
        result = {"negatives": table.negatives, "cached": stats.cached, "calls": calls}
    elif mode == "score":
        from tests.negatives._fakes import TableTeacher

        class SlowTeacher(TableTeacher):
            chunk_size = 50  # many small transactions, interleaved with the other process's
            fingerprint = "slow"  # the same file in both processes (str hashes are per process)

            def _score_batch(self, query_texts, doc_texts):
                time.sleep(options["delay"])
                return super()._score_batch(query_texts, doc_texts)

        first, last = options["pairs"]
        docs = [f"document {i}" for i in range(first, last)]
        teacher = SlowTeacher({f"document {i}": i + 0.5 for i in range(2000)})
        _wait_for_go(folder, name)
        scores = teacher.score_pairs(["a query"] * len(docs), docs)
        digest = hashlib.sha256(np.asarray(scores, dtype=np.float32).tobytes()).hexdigest()
        result = {"scored": teacher.scored, "sha256": digest}
    (folder / f"{name}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]))
