"""False-negative filtering by teacher score margin: a mined negative the teacher scores close
to the positive is probably an unjudged positive (RocketQA, Qu et al. 2021, denoises with a
cross-encoder; NV-Retriever, Moreira et al. 2024, keeps negatives below the positive's score
less a margin)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from twotower.errors import ConfigError

Reference = Literal["min", "max"]


def positive_reference(positive_scores, reference: Reference = "max") -> float:
    """The positive score negatives are compared with when a query has several positives: the
    highest (``max``, the default) or the lowest (``min``, stricter: a negative the teacher rates
    like any known positive is dropped; with collections that judge many weak positives, such
    as Cranfield, it can drop nearly every candidate)."""
    values = np.asarray(positive_scores, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("no positive score to compare with")
    if reference == "min":
        return float(values.min())
    if reference == "max":
        return float(values.max())
    raise ConfigError(f"reference must be 'min' or 'max', got {reference!r}")


def false_negative_mask(
    negative_scores, positive_scores, margin: float, reference: Reference = "max"
) -> np.ndarray:
    """Boolean mask of the negatives to KEEP.

    A negative is dropped when its teacher score > (teacher score of the positive − ``margin``).
    ``margin`` is in the teacher's units: e.g. 3.0 on cross-encoder logits, about 0.1 on scores
    in [0, 1] (the fusion teacher, normalised scores).
    """
    threshold = positive_reference(positive_scores, reference) - margin
    return np.asarray(negative_scores, dtype=np.float64).reshape(-1) <= threshold
