"""A corpus encoded by every process of a torchrun job: each rank encodes one contiguous slice,
the slices are gathered to rank 0 in corpus order, and rank 0 writes the embedding cache entry
that a plain :func:`~twotower.models.embedding_cache.encode_corpus` then reads. With N processes
the corpus is encoded N times faster, while mining, evaluation and the cache stay rank 0's.

The slices travel through the process group (gloo or NCCL), not a shared folder, so nodes need
no common file system for it; they are sent in blocks of :data:`GATHER_ROWS` rows to bound the
size of one message.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.distributed as dist

from twotower.data.beir import Corpus
from twotower.data.files import file_lock
from twotower.models.backends import prepare_backend
from twotower.models.embedding_cache import _save, _verified_entry, cache_path, encode_corpus
from twotower.models.encoder import Encoder
from twotower.settings import process_rank, world_size

log = logging.getLogger(__name__)

GATHER_ROWS = 1 << 16  # rows per gathered block: 100 MiB of 384-d float32 from each rank


def shard_bounds(size: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [start, end) of rank ``rank`` among ``world``: contiguous, sizes differing by one at
    most, in rank order, so concatenating the slices by rank gives corpus order."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def transport_device() -> torch.device:
    """Where a tensor must be for a collective of the current process group: this rank's GPU
    under NCCL (which moves CUDA tensors only), the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather_rows(local: np.ndarray, size: int, world: int, rank: int) -> np.ndarray | None:
    """Every rank's slice, gathered to rank 0 and concatenated in rank order (None elsewhere)."""
    device = transport_device()
    bounds = [shard_bounds(size, world, r) for r in range(world)]
    longest = max(end - start for start, end in bounds)
    dim = local.shape[1]
    merged = np.empty((size, dim), dtype=np.float32) if rank == 0 else None
    for first in range(0, longest, GATHER_ROWS):
        width = min(GATHER_ROWS, longest - first)
        block = torch.zeros(width, dim, dtype=torch.float32, device=device)
        mine = local[first : first + width]
        block[: len(mine)] = torch.from_numpy(np.ascontiguousarray(mine, dtype=np.float32))
        received = [torch.empty_like(block) for _ in range(world)] if rank == 0 else None
        dist.gather(block, received, dst=0)
        if merged is None:
            continue
        assert received is not None  # rank 0, like merged
        for r, (start, end) in enumerate(bounds):
            rows = min(width, end - start - first)
            if rows > 0:
                merged[start + first : start + first + rows] = received[r][:rows].cpu().numpy()
    return merged


def _cached_on_rank_zero(path, size: int) -> tuple[bool, np.ndarray | None]:
    """Whether rank 0 holds a valid entry of ``size`` rows, told to every rank, and the entry
    (on rank 0). Read without waiting for a lock: the other ranks wait in a collective meanwhile,
    and an entry caught between its two renames reads as damaged, so it is encoded again."""
    entry = _verified_entry(path, size) if process_rank() == 0 else None
    found = [entry is not None]
    dist.broadcast_object_list(found, src=0)
    return bool(found[0]), entry


def encode_corpus_sharded(
    encoder: Encoder, corpus: Corpus, *, use_cache: bool = True
) -> np.ndarray | None:
    """Called by every rank of an initialised process group: the corpus's document embeddings on
    rank 0 (None on the others), each rank having encoded its slice; with ``use_cache``, rank 0
    writes them (before the route's adapters, see embedding_cache) to the embedding cache (a valid entry there is used, and nothing encoded). In a
    single process, :func:`encode_corpus`."""
    world = world_size()
    if world == 1 or not dist.is_initialized():
        return encode_corpus(encoder, corpus, use_cache=use_cache)[0]
    rank = process_rank()
    path = cache_path(encoder, "document", corpus.fingerprint)
    if use_cache:
        found, entry = _cached_on_rank_zero(path, len(corpus.texts))
        if found:
            dist.barrier()  # no rank runs ahead (or exits) while another still receives
            return None if entry is None else encoder.adapt("document", entry)
    prepare_backend(encoder, "document", corpus.texts)  # a failed export changes the key
    path = cache_path(encoder, "document", corpus.fingerprint)
    start, end = shard_bounds(len(corpus.texts), world, rank)
    log.info("rank %d encodes documents %d–%d of %d", rank, start, end, len(corpus.texts))
    local = encoder.encode(corpus.texts[start:end], task="document", adapted=False)
    merged = _gather_rows(local, len(corpus.texts), world, rank)
    if merged is not None and use_cache:
        with file_lock(path):  # not while another run writes or reads the same entry
            _save(path, merged)
    dist.barrier()  # the entry exists before any rank goes on to read it
    return None if merged is None else encoder.adapt("document", merged)
