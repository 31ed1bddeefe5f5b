"""Rank-0 discipline under torchrun: work that writes shared files (mining, teacher scores, caches,
the model, evaluation, the report) happens once, on rank 0, while the other ranks wait at a
barrier and then read what rank 0 wrote (the caches are keyed by every input, so they hit).
Tevatron's driver and sentence-transformers' trainer save on rank 0 the same way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from twotower.settings import is_main_process, world_size

log = logging.getLogger(__name__)


# How long a rank waits in a collective for the others: rank 0 alone mines, scores and runs a
# sync refresh round while they wait, which takes hours on a large corpus (torch's default
# is 10 to 30 minutes).
PROCESS_GROUP_TIMEOUT = timedelta(hours=12)


def ensure_process_group(device: str | None = None) -> None:
    """Join torchrun's process group now (the trainer would later) so ranks can wait for each
    other before training; NCCL on this rank's GPU (``$LOCAL_RANK``), gloo otherwise. No-op in
    a plain run."""
    if world_size() == 1 or dist.is_initialized():
        return
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if cuda:  # else every rank's collectives would go through GPU 0
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=PROCESS_GROUP_TIMEOUT)


def wait_for_every_rank() -> None:
    """A barrier under torchrun; nothing in a plain run."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextmanager
def main_process_first(device: str | None = None) -> Iterator[None]:
    """Rank 0 runs the block first; the others run it after rank 0 finished (reading its caches)."""
    if world_size() == 1:
        yield
        return
    ensure_process_group(device)
    if not is_main_process():
        dist.barrier()
    try:
        yield
    finally:
        if is_main_process():
            dist.barrier()
