"""A residual adapter on a tower's output embeddings, as a sentence-transformers module.

``e' = normalize(e + s · W2 GELU(W1 e))`` with ``W2`` and its bias zero at the start, so training
begins at the base model (the near-identity initialisation of Houlsby et al. 2019's bottleneck
adapters). Its use here is the document route of a model trained against a frozen document index
(query-side fine-tuning, Lee et al. 2021): the transformer under it stays frozen and the index
stays cached, while the document side still moves, through a small MLP over the looked-up rows
(Search-Adaptor, Yoon et al. 2024, customises frozen embeddings in the same spirit).
The encoder caches a route's embeddings before its adapters (``models/encoder.py``), so a model
with an adapter is evaluated without re-encoding any corpus.

WiSE-FT (Wortsman et al. 2022) interpolates each trained weight with the base model's; the base
of an adapter is the identity, so a ratio scales its residual (``residual_scale``) instead.

References:
    - Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP".
    - Lee et al. 2021, "Learning Dense Representations of Phrases at Scale".
    - Yoon et al. 2024, "Search-Adaptor: Embedding Customization for Information Retrieval".
    - Wortsman et al. 2022, "Robust fine-tuning of zero-shot models".
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from sentence_transformers.base.modules.module import Module
from torch import Tensor


class ResidualAdapter(Module):
    """``normalize(e + residual_scale · MLP(e))`` on ``sentence_embedding``, MLP zero at the start.

    Args:
        dimension: the embedding size it reads and writes.
        hidden: the MLP's hidden size (default: ``dimension``).
        residual_scale: the factor on the MLP's output; WiSE-FT sets it to its ratio.
    """

    config_keys: list[str] = ["dimension", "hidden", "residual_scale"]

    def __init__(self, dimension: int, hidden: int | None = None, residual_scale: float = 1.0):
        super().__init__()
        self.dimension = dimension
        self.hidden = hidden or dimension
        self.residual_scale = residual_scale
        self.up = torch.nn.Linear(dimension, self.hidden)
        self.down = torch.nn.Linear(self.hidden, dimension)
        torch.nn.init.zeros_(self.down.weight)
        torch.nn.init.zeros_(self.down.bias)
        # Set by the encoder while it computes the embeddings it caches (those under the adapter).
        self.bypass = False

    def adapt(self, embeddings: Tensor) -> Tensor:
        """The adapted, unit-length embeddings of ``embeddings`` (any leading shape)."""
        residual = self.down(torch.nn.functional.gelu(self.up(embeddings)))
        return torch.nn.functional.normalize(embeddings + self.residual_scale * residual, dim=-1)

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        if not self.bypass:
            features["sentence_embedding"] = self.adapt(features["sentence_embedding"])
        return features

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        init_defaults: dict[str, Any] | None = None,
        **kwargs,
    ) -> ResidualAdapter:
        where = (subfolder, token, cache_folder, revision, local_files_only)
        keys = ("subfolder", "token", "cache_folder", "revision", "local_files_only")
        hub: dict[str, Any] = dict(zip(keys, where, strict=True))  # for both reads
        config = cls.load_config(model_name_or_path, **hub)
        adapter = cls(**{k: v for k, v in config.items() if k in cls.config_keys})
        cls.load_torch_weights(model_name_or_path, model=adapter, **hub)
        return adapter


@contextlib.contextmanager
def bypassed(heads: list[ResidualAdapter]):
    """The network's forward without ``heads``, which the encoder applies after it (in fp32)."""
    for head in heads:
        head.bypass = True
    try:
        yield
    finally:
        for head in heads:
            head.bypass = False


def adapters(modules) -> list[ResidualAdapter]:
    """The adapters among ``modules`` (a route's module list)."""
    return [m for m in modules if isinstance(m, ResidualAdapter)]


__all__ = ["ResidualAdapter", "adapters", "bypassed"]
