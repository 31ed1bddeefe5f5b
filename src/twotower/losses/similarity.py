"""Student similarity functions shared by every loss.

``s(a, b)`` in METHODS.md is either the cosine or the dot product of two embeddings. Cosine is
implemented as "L2-normalise once, then dot", so every block of a loss pays for one normalisation
per tensor instead of one per pair of tensors (what ``sentence_transformers.util.cos_sim`` does).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from twotower.errors import ConfigError

SimilarityName = Literal["cosine", "dot"]
SIMILARITIES: tuple[str, ...] = ("cosine", "dot")


def check_similarity(name: str, option: str = "similarity") -> SimilarityName:
    if name not in SIMILARITIES:
        raise ConfigError(f"{option}: unknown similarity {name!r}; choose one of {list(SIMILARITIES)}")
    return name  # type: ignore[return-value]


def prepare(x: Tensor, similarity: SimilarityName) -> Tensor:
    """Map embeddings so that a plain dot product of prepared tensors is ``s``."""
    if similarity == "cosine":
        # Same eps as sentence-transformers' normalize_embeddings (F.normalize default 1e-12).
        return F.normalize(x, p=2, dim=-1)
    return x


def pairwise(a: Tensor, b: Tensor, similarity: SimilarityName) -> Tensor:
    """Row-wise similarity of two (..., D) tensors -> (...)."""
    return (prepare(a, similarity) * prepare(b, similarity)).sum(-1)
