"""In-batch negatives across processes: every rank's rows become candidates of every rank's anchors.

Under ``torch.distributed`` (torchrun), :func:`gather_across_ranks` gathers each row tensor of an
:class:`~twotower.losses.batch.EmbeddingBatch` from all ranks — embeddings with
``torch.distributed.nn.functional.all_gather``, whose backward sends each rank's gradient back
to the rank that computed the embedding — and keeps this rank's rows as the anchors
(``anchor_offset = rank · local rows``), as sentence-transformers' ``gather_across_devices``
does. Each rank then averages its loss over its own anchors and DDP averages the gradients over
ranks, so the gradient equals that of one process on the combined batch: no factor of the world
size too many (gathering with gradients and also multiplying the loss, open_clip#616) or too few
(gathering without gradients, so a rank's negatives get no gradient from other ranks). Ids
travel with their rows, so false-negative masks and same-tower self-exclusion hold across
ranks.

Every rank must bring the same number of rows (the trainer drops the last, uneven batch under
distributed training); a mismatch is a :class:`~twotower.losses.batch.BatchShapeError`. Slot
blocks may be of different widths on different ranks (a batch pads its hard negatives, negative
queries, candidates and known positives to its own widest row): they are padded to the widest
rank's first, with masked slots and -1 ids, which no loss counts.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from twotower.losses.batch import _SLOT_FIELDS, BatchShapeError, EmbeddingBatch

# Row tensors that carry gradients back to their rank; the other row tensors are data.
_WITH_GRAD = ("queries", "positives", "hard_negatives", "negative_queries", "candidates")
_DATA = (
    "hard_negatives_mask",
    "negative_queries_mask",
    "query_ids",
    "positive_ids",
    "hard_negative_ids",
    "negative_query_ids",
    "query_positive_ids",
    "teacher_positive_scores",
    "teacher_negative_scores",
    "teacher_negative_query_scores",
    "candidates_mask",
    "candidate_ids",
    "candidate_teacher_scores",
)


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside distributed training."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Rows of ``tensor`` from every rank, concatenated in rank order; differentiable."""
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in torch 2.13 for a private module's function
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_gather_data(tensor: Tensor) -> Tensor:
    """Rows of ``tensor`` from every rank, concatenated in rank order; no gradient."""
    flag = tensor.dtype == torch.bool  # not every backend gathers booleans
    local = tensor.to(torch.uint8) if flag else tensor.contiguous()
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    out = torch.cat(parts, dim=0)
    return out.bool() if flag else out


def _padded(tensor: Tensor | None, width: int, value: float | bool) -> Tensor | None:
    """``tensor`` with its second dimension padded to ``width`` with ``value``."""
    if tensor is None or tensor.shape[1] == width:
        return tensor
    pad = [0, 0] * (tensor.dim() - 2) + [0, width - tensor.shape[1]]
    if tensor.dtype == torch.bool:
        return F.pad(tensor.to(torch.uint8), pad, value=int(value)).bool()
    return F.pad(tensor, pad, value=value)


def _same_widths(batch: EmbeddingBatch) -> EmbeddingBatch:
    """``batch`` with every slot block (and the known positives) as wide as the widest rank's,
    after checking that every rank brings as many rows (one collective for both)."""
    blocks = [name for name in _SLOT_FIELDS if getattr(batch, name) is not None]
    fields = [getattr(batch, name) for name in blocks] + [batch.query_positive_ids]
    local = [batch.num_rows] + [0 if t is None else t.shape[1] for t in fields]
    every = all_gather_data(torch.tensor([local], device=batch.queries.device))
    if not bool((every[:, 0] == batch.num_rows).all()):
        raise BatchShapeError(
            f"ranks bring {every[:, 0].tolist()} rows: gathering negatives across processes needs"
            " the same batch size on every rank (drop the last, uneven batch: dataloader_drop_last)"
        )
    most, least = every[:, 1:].amax(dim=0), every[:, 1:].amin(dim=0)
    widths, uneven = most, (most != least).tolist()
    changes: dict[str, Any] = {}  # EmbeddingBatch fields: tensors, or None for an absent one
    for index, name in enumerate(blocks):
        if not uneven[index]:  # the same on every rank: nothing to pad anywhere
            continue
        block, width = getattr(batch, name), int(widths[index])
        mask_name, ids_name, scores_name = _SLOT_FIELDS[name]
        mask = getattr(batch, mask_name)
        if mask is None:  # every rank gathers a mask then: every slot real here, padding not
            mask = torch.ones(block.shape[:2], dtype=torch.bool, device=block.device)
        changes[name] = _padded(block, width, 0.0)
        changes[mask_name] = _padded(mask, width, False)
        changes[ids_name] = _padded(getattr(batch, ids_name), width, -1)
        changes[scores_name] = _padded(getattr(batch, scores_name), width, 0.0)
    if batch.query_positive_ids is not None:
        changes["query_positive_ids"] = _padded(batch.query_positive_ids, int(widths[-1]), -1)
    return dataclasses.replace(batch, **changes) if changes else batch


def gather_across_ranks(batch: EmbeddingBatch) -> EmbeddingBatch:
    """``batch`` with the rows of every rank, this rank's rows as anchors (see the module
    docstring); ``batch`` itself outside distributed training or with one process."""
    rank, size = world()
    if size == 1:
        return batch
    if batch.anchor_offset != 0 or batch.num_anchors is not None:
        raise BatchShapeError("gather_across_ranks takes a local batch (every row an anchor)")
    if batch.teacher_pair_scores is not None:
        raise BatchShapeError(
            "teacher_pair_scores (every query of the batch against every positive) cannot be gathered"
            " across processes: the teacher never scored pairs of different ranks"
        )
    rows = batch.num_rows
    batch = _same_widths(batch)
    gathered = {}
    for name in _WITH_GRAD + _DATA:
        value = getattr(batch, name)
        if value is not None:
            gathered[name] = (all_gather_with_grad if name in _WITH_GRAD else all_gather_data)(
                value
            )
    return dataclasses.replace(batch, **gathered, anchor_offset=rank * rows, num_anchors=rows)
