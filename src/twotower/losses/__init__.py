"""Training losses for two-tower retrievers: InfoNCE with DANCE, SamToNe and GTE; distillation.

For a sentence-transformers user, the losses that take the model (``Loss(model, ...)``):

* :class:`InfoNCELoss` — MNRL, MNRL-Dual / DANCE, SamToNe, GTE's joint loss.
* :class:`MarginMSEDualLoss` — Margin-MSE and Margin-MSE-Dual.
* :class:`ListwiseDistillationLoss` — listwise KL distillation (+ contrastive term).
* :class:`TwoTowerLoss` — any weighted sum of them, declared as data; each term logged.

Underneath (the embedding-level losses take an :class:`EmbeddingBatch`, no model):

* :class:`EmbeddingBatch` — the embeddings (and ids, masks, teacher scores) every loss reads.
* :class:`ContrastiveLoss` — InfoNCE with explicit blocks (q2d, d2q, q2q, d2d) and softmax
  groups: MNRL, MNRL-Dual / DANCE, SamToNe, GTE's joint loss.
* :class:`MarginMSELoss` — Margin-MSE and Margin-MSE-Dual.
* :class:`ListwiseKLLoss` — listwise KL distillation (+ contrastive term).
* :class:`CombinedLoss`, :func:`build_loss` and the spec models — weighted sums declared as data.
* :class:`SentenceTransformerLoss` — any of the above as a sentence-transformers loss.
* :class:`~twotower.losses.frozen_documents.FrozenDocumentsLoss` — the same for a query tower
  trained against a frozen, pre-encoded document index.
* :class:`CachedSentenceTransformerLoss` — the same with gradient caching (GradCache): big batches, small memory.
"""

from twotower.losses.base import EmbeddingLoss
from twotower.losses.batch import BatchLayout, BatchShapeError, EmbeddingBatch
from twotower.losses.cached import CachedSentenceTransformerLoss
from twotower.losses.combined import CombinedLoss
from twotower.losses.contrastive import ContrastiveLoss
from twotower.losses.listwise import ListwiseKLLoss
from twotower.losses.margin_mse import MarginMSELoss
from twotower.losses.model_losses import (
    InfoNCELoss,
    ListwiseDistillationLoss,
    MarginMSEDualLoss,
    TwoTowerLoss,
)
from twotower.losses.softmax_groups import (
    BLOCKS,
    PRESETS,
    SoftmaxGroup,
    direction_groups,
    preset_groups,
)
from twotower.losses.spec import (
    ContrastiveSpec,
    GroupSpec,
    ListwiseSpec,
    LossSpec,
    MarginMSESpec,
    build_loss,
    parse_loss_specs,
)
from twotower.losses.st_loss import SentenceTransformerLoss

__all__ = [
    "BLOCKS",
    "PRESETS",
    "BatchLayout",
    "BatchShapeError",
    "CombinedLoss",
    "ContrastiveLoss",
    "ContrastiveSpec",
    "EmbeddingBatch",
    "EmbeddingLoss",
    "GroupSpec",
    "InfoNCELoss",
    "ListwiseDistillationLoss",
    "ListwiseKLLoss",
    "ListwiseSpec",
    "LossSpec",
    "MarginMSEDualLoss",
    "MarginMSELoss",
    "MarginMSESpec",
    "SentenceTransformerLoss",
    "CachedSentenceTransformerLoss",
    "SoftmaxGroup",
    "TwoTowerLoss",
    "build_loss",
    "direction_groups",
    "parse_loss_specs",
    "preset_groups",
]
