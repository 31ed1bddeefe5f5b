"""Build the model a recipe trains: shared towers, or separate query and document towers.

Separate towers use sentence-transformers' own ``Router`` (query / document routes), so the
trained model saves and loads as a plain ``SentenceTransformer``.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import torch

from twotower.errors import ConfigError
from twotower.models.adapter import ResidualAdapter, adapters
from twotower.models.encoder import embedding_dimension, load_sentence_transformer

log = logging.getLogger(__name__)


def build_model(
    name: str,
    *,
    towers: str = "shared",
    pooling: str | None = None,
    max_length: int | None = None,
    query_prompt: str = "",
    document_prompt: str = "",
    device: str | None = None,
    document_adapter: bool = False,
):
    """``document_adapter``: a :class:`~twotower.models.adapter.ResidualAdapter` ends the
    document route (separate towers only), unless the model has one there already."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Router

    base = load_sentence_transformer(name, device=device)
    if pooling is not None:
        _set_pooling(base, pooling)
    if max_length is not None:
        base.max_seq_length = max_length
    prompts = {"query": query_prompt, "document": document_prompt}
    if towers == "shared":
        base.prompts = {**(base.prompts or {}), **prompts}
        return base
    if towers != "separate":
        raise ConfigError(f"towers must be shared or separate, got {towers!r}")
    routers = [module for module in base if isinstance(module, Router)]
    if routers:  # already asymmetric
        route = cast("torch.nn.Sequential", routers[0].sub_modules["document"])
        if document_adapter and not adapters(route):
            route.append(_adapter_for(base).to(base.device))
        return base
    document_modules = list(base)
    query_modules = copy.deepcopy(document_modules)
    if document_adapter:
        document_modules.append(_adapter_for(base))
    router = Router.for_query_document(
        query_modules=query_modules, document_modules=document_modules
    )
    model = SentenceTransformer(modules=[router], device=str(base.device), prompts=prompts)
    model.similarity_fn_name = base.similarity_fn_name
    return model


def _adapter_for(model) -> ResidualAdapter:
    return ResidualAdapter(embedding_dimension(model))


def _set_pooling(model, mode: str) -> None:
    from sentence_transformers.sentence_transformer.modules import Pooling

    for index, module in enumerate(model):
        if isinstance(module, Pooling):
            model[index] = Pooling(
                module.get_embedding_dimension()
                if hasattr(module, "get_embedding_dimension")
                else module.word_embedding_dimension,
                pooling_mode=mode,
            )
            return
    raise ValueError("the model has no Pooling module to change")
