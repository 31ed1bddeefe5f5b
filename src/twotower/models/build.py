"""Build the model a recipe trains: shared towers, or separate query and document towers.

Separate towers use sentence-transformers' own ``Router`` (query / document routes), so the
trained model saves and loads as a plain ``SentenceTransformer``.
"""

from __future__ import annotations

import copy
import logging

from twotower.errors import ConfigError
from twotower.models.encoder import load_sentence_transformer

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
):
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
    if any(isinstance(module, Router) for module in base):
        return base  # already asymmetric
    document_modules = list(base)
    query_modules = copy.deepcopy(document_modules)
    router = Router.for_query_document(
        query_modules=query_modules, document_modules=document_modules
    )
    model = SentenceTransformer(modules=[router], device=str(base.device), prompts=prompts)
    model.similarity_fn_name = base.similarity_fn_name
    return model


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
