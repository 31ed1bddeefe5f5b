"""EmbeddingBatch.validate: the first field that does not fit is named."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.losses._losses_batches import make_batch
from twotower.losses import BatchShapeError

SLOT_FIELDS = [
    ("hard_negatives", "hard_negatives_mask", torch.bool),
    ("hard_negatives", "hard_negative_ids", torch.long),
    ("hard_negatives", "teacher_negative_scores", torch.float64),
    ("negative_queries", "negative_queries_mask", torch.bool),
    ("negative_queries", "negative_query_ids", torch.long),
    ("negative_queries", "teacher_negative_query_scores", torch.float64),
    ("candidates", "candidates_mask", torch.bool),
    ("candidates", "candidate_ids", torch.long),
    ("candidates", "candidate_teacher_scores", torch.float64),
]


@pytest.mark.parametrize("block, field, dtype", SLOT_FIELDS)
def test_a_slot_field_needs_its_block(block, field, dtype):
    batch = make_batch(k=0, m=0, p=0)
    batch = dataclasses.replace(batch, **{field: torch.zeros(5, 2, dtype=dtype)})
    with pytest.raises(BatchShapeError, match=f"^{field} is set but {block} is None$"):
        batch.validate()


@pytest.mark.parametrize("block, field, dtype", SLOT_FIELDS)
def test_a_slot_field_has_one_column_per_slot(block, field, dtype):
    batch = make_batch(k=3, m=3, p=3)
    batch = dataclasses.replace(batch, **{field: torch.zeros(5, 2, dtype=dtype)})
    with pytest.raises(BatchShapeError, match=rf"^{field} must have shape \(5, 3\), got \(5, 2\)$"):
        batch.validate()


def test_a_block_is_rows_by_slots_by_dimension():
    batch = dataclasses.replace(make_batch(), hard_negatives=torch.zeros(5, 3, 4))
    with pytest.raises(BatchShapeError, match=r"hard_negatives must be 3-D .* and last dim 6"):
        batch.validate()
