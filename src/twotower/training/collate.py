"""Collating training rows for sentence-transformers' trainer: the rows' integer ids become
tensors beside the teacher scores, in the label the losses read (twotower.training.rows makes
the rows)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twotower.losses.st_loss import TEACHER_SCORES

IDS_COLUMN = "twotower_ids"
# A row's number, in the rows the data loader collects instead of their texts.
ROW_COLUMN = "twotower_row"


class RowsCollator:
    """Mixin for sentence-transformers' collator: turns ``twotower_ids`` into id tensors and
    hands them to the loss with the teacher scores, as ``label = {TEACHER_SCORES: ..., ids}``
    (the id fields of the losses, or a frozen index's document rows). Numbered rows (what the
    data loader reads ahead) become ``{ROW_COLUMN: [numbers]}``, drawn at their step."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if features and ROW_COLUMN in features[0]:
            return {ROW_COLUMN: [f[ROW_COLUMN] for f in features]}
        if not features or IDS_COLUMN not in features[0]:
            return super().__call__(features)  # type: ignore[misc]
        ids = [f[IDS_COLUMN] for f in features]
        batch = super().__call__(  # type: ignore[misc]
            [{k: v for k, v in f.items() if k != IDS_COLUMN} for f in features]
        )
        label: dict[str, Any] = {TEACHER_SCORES: batch.pop("label", None)}
        for name in ids[0]:
            values = [row[name] for row in ids]
            if isinstance(values[0], list):
                width = max(len(v) for v in values)
                values = [v + [-1] * (width - len(v)) for v in values]
            label[name] = torch.tensor(values, dtype=torch.long)
        batch["label"] = label
        return batch


def rows_dataset(read: Callable[[int], dict[str, Any]], count: int, *, numbered: bool = False):
    """A ``datasets.Dataset`` of ``count`` row numbers whose rows are made by ``read`` when read
    (e.g. ``functools.partial(rows.read, with_teacher=True)``); ``numbered``: each row also
    carries its number (:data:`ROW_COLUMN`), which :class:`RowsCollator` collects instead."""
    from datasets import Dataset  # heavy import, deferred

    def transform(batch: dict[str, list]) -> dict[str, list]:
        rows = [read(i) for i in batch["row"]]
        if numbered:
            rows = [{**row, ROW_COLUMN: i} for row, i in zip(rows, batch["row"], strict=True)]
        return {name: [r[name] for r in rows] for name in rows[0]} if rows else {}

    return Dataset.from_dict({"row": list(range(count))}).with_transform(transform)
