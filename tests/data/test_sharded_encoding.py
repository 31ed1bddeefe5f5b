"""A corpus encoded by two processes (gloo, CPU), each its slice, gathered to rank 0 in corpus
order: the same embeddings as one process, and one valid cache entry that later runs reuse."""

from __future__ import annotations

import os
import socket

import numpy as np
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import DOCS, write_collection
from twotower.data import load_collection
from twotower.models.embedding_cache import encode_corpus
from twotower.models.encoder import Encoder
from twotower.models.sharded_encoding import encode_corpus_sharded, shard_bounds

WORLD = 2
# Seven documents (slices of 4 and 3 rows) sent in blocks of 2 rows: uneven slices, several blocks.
SEVEN_DOCS = [*DOCS, {"_id": "d7", "title": "Tea", "text": "Oolong is a partly oxidised tea."}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, model: str, data: str, cache: str, out: str, cached: bool):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        TWOTOWER_CACHE=cache,
    )
    from twotower.models import sharded_encoding

    sharded_encoding.GATHER_ROWS = 2
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        encoder = Encoder.from_name(model, device="cpu")
        encoded: list[int] = []
        real_encode = encoder.encode

        def counting_encode(texts, **kwargs):
            encoded.append(len(texts))
            return real_encode(texts, **kwargs)

        encoder.encode = counting_encode  # type: ignore[method-assign]
        corpus = load_collection(data).corpus
        merged = sharded_encoding.encode_corpus_sharded(encoder, corpus)
        assert (merged is None) == (rank != 0)
        if cached:
            assert encoded == [], f"rank {rank} encoded {encoded} despite a valid cache entry"
        else:
            assert encoded == [4 - rank], f"rank {rank} encoded {encoded}"
        if rank == 0:
            np.save(out, merged)
    finally:
        dist.destroy_process_group()


def test_shards_are_contiguous_near_equal_and_in_rank_order():
    for size in (0, 1, 7, 100):
        for world in (1, 2, 3, 8):
            bounds = [shard_bounds(size, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == size
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [end - start for start, end in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_two_processes_encode_the_corpus_as_one_does_and_leave_one_cache_entry(
    tiny_model, tmp_path, monkeypatch
):
    data = write_collection(tmp_path / "seven", docs=SEVEN_DOCS)
    cache = tmp_path / "cache"
    monkeypatch.setenv("TWOTOWER_CACHE", str(cache))
    for cached in (False, True):
        out = tmp_path / f"merged-{cached}.npy"
        args = (_free_port(), str(tiny_model), str(data), str(cache), str(out), cached)
        mp.spawn(_worker, args=args, nprocs=WORLD, join=True)
        merged = np.load(out)
        alone, _ = encode_corpus(
            Encoder.from_name(str(tiny_model), device="cpu"),
            load_collection(data).corpus,
            use_cache=False,
        )
        np.testing.assert_allclose(merged, alone, atol=1e-5)
    entries = sorted(p.name for p in (cache / "embeddings").glob("*.npy"))
    assert len(entries) == 1, entries
    reread, hit = encode_corpus(
        Encoder.from_name(str(tiny_model), device="cpu"), load_collection(data).corpus
    )
    assert hit and np.array_equal(reread, merged)


def test_one_process_is_a_plain_cached_encoding(tiny_model, tiny_collection):
    encoder = Encoder.from_name(str(tiny_model), device="cpu")
    corpus = load_collection(tiny_collection).corpus
    first = encode_corpus_sharded(encoder, corpus)
    again, hit = encode_corpus(encoder, corpus)
    assert hit and np.array_equal(first, again)
