"""Encode texts with a sentence-transformers model: tokenise once, sort by length, batch.

One ``SentenceTransformer`` holds both towers: a shared network, or a ``Router`` with a
query route and a document route (sentence-transformers' own asymmetric format), so a
trained model saves and loads as any sentence-transformers model does.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Literal, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from twotower.errors import ConfigError, ResolutionError
from twotower.models.resolve import resolve_model

log = logging.getLogger(__name__)

Task = Literal["query", "document"]
Precision = Literal["fp32", "bf16", "auto"]

# Texts are tokenised and length-sorted in blocks of this many, so memory stays bounded
# for large corpora while padding stays low.
TOKENIZE_BLOCK = 32768


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = open("/proc/cpuinfo").read()
        except OSError:
            return False
        return "amx_bf16" in flags or "avx512_bf16" in flags
    return False


def load_sentence_transformer(
    name_or_path: str, device: str | None = None, *, trust_remote_code: bool = False
):
    from sentence_transformers import SentenceTransformer

    path = resolve_model(name_or_path)
    try:
        return SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code)
    except OSError as exc:  # hub misses and unreadable folders; one line for the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ResolutionError(f"could not load model '{name_or_path}' ({path}): {reason}") from None


class Encoder:
    """Turns queries and documents into L2-normalised float32 numpy embeddings."""

    def __init__(
        self,
        model,
        *,
        batch_size: int = 64,
        max_length: int | None = None,
        precision: Precision = "auto",
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        normalize: bool = True,
        show_progress: bool = True,
        name: str | None = None,
        max_batch_tokens: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens must be positive, got {max_batch_tokens}")
        self.model = model
        self.name = (
            name
            or getattr(model, "model_card_data", None)
            and model.model_card_data.base_model
            or "model"
        )
        self.batch_size = batch_size
        # Token budget per batch (rows x padded width): short texts (queries) go in larger
        # batches, long ones in smaller; None keeps ``batch_size`` texts per batch.
        self.max_batch_tokens = max_batch_tokens
        if max_length is not None:
            model.max_seq_length = max_length
        self.precision = precision
        prompts = getattr(model, "prompts", {}) or {}
        self.prompts = {
            "query": query_prompt if query_prompt is not None else prompts.get("query") or None,
            "document": document_prompt
            if document_prompt is not None
            else prompts.get("document") or None,
        }
        self.normalize = normalize
        self.show_progress = show_progress
        self._fingerprints: dict[str, str] = {}
        self._weight_digests: dict[tuple[int, ...], hashlib._Hash] = {}

    @classmethod
    def from_name(cls, name_or_path: str, *, device: str | None = None, **kwargs) -> Encoder:
        kwargs.setdefault("name", name_or_path)
        return cls(load_sentence_transformer(name_or_path, device=device), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def max_length(self) -> int:
        return int(self.model.max_seq_length)

    def use_bf16(self) -> bool:
        if self.precision == "bf16":
            return True
        return self.precision == "auto" and bf16_supported(self.device)

    @cached_property
    def fingerprint(self) -> str:
        """Identifies both towers' weights and every setting that changes an embedding."""
        return hashlib.sha256(
            (self.fingerprint_for("query") + self.fingerprint_for("document")).encode()
        ).hexdigest()[:24]

    def fingerprint_for(self, task: Task) -> str:
        """Identifies what embeds ``task`` texts: that route's weights and settings only.

        A separate-towers model whose document tower equals a shared model's network gets
        that model's document fingerprint, so its corpus embeddings come from the cache.
        """
        if task not in self._fingerprints:
            modules = route_modules(self.model, task)
            route = tuple(id(m) for m in modules)
            weights = self._weight_digests.get(route)
            if weights is None:  # a shared network: both routes hash the weights once
                weights = hashlib.sha256()
                for position, module in enumerate(modules):
                    for key, tensor in module.state_dict().items():
                        weights.update(f"{position}.{key}".encode())
                        weights.update(str(tensor.dtype).encode())
                        weights.update(
                            memoryview(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
                        )
                self._weight_digests[route] = weights
            digest = weights.copy()
            settings = (self.max_length, self.prompts[task], self.normalize, self.use_bf16())
            digest.update(repr(settings).encode())
            self._fingerprints[task] = digest.hexdigest()[:24]
        return self._fingerprints[task]

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, task="query")

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, task="document")

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, task: Task, desc: str | None = None) -> np.ndarray:
        """Embeddings of ``texts`` in input order. Each distinct text is tokenised and encoded
        once; texts are sorted by token length so a batch pads little."""
        self.model.eval()
        dim = embedding_dimension(self.model)
        distinct: dict[str, int] = {}
        slots = np.fromiter(
            (distinct.setdefault(t, len(distinct)) for t in texts), dtype=np.int64, count=len(texts)
        )
        unique = list(distinct)
        output = np.empty((len(unique), dim), dtype=np.float32)
        progress = tqdm(
            total=len(unique),
            desc=desc or ("Encoding queries" if task == "query" else "Encoding documents"),
            unit="text",
            disable=not self.show_progress,
        )
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.use_bf16()
            else contextlib.nullcontext()
        )
        with progress, autocast:
            for block_start in range(0, len(unique), TOKENIZE_BLOCK):
                block = unique[block_start : block_start + TOKENIZE_BLOCK]
                features = self.model.preprocess(block, prompt=self.prompts[task], task=task)
                lengths = features["attention_mask"].sum(dim=1)
                order = torch.argsort(lengths, descending=True, stable=True)
                for rows in self._batches(order, lengths):
                    width = int(lengths[rows[0]])
                    batch = _select(features, rows, width, len(block))
                    batch = {
                        k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                        for k, v in batch.items()
                    }
                    embeddings = self.model(batch, task=task)["sentence_embedding"].float()
                    if self.normalize:
                        embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
                    output[block_start + rows.numpy()] = embeddings.cpu().numpy()
                    progress.update(len(rows))
        return output if len(unique) == len(texts) else output[slots]

    def _batches(self, order: torch.Tensor, lengths: torch.Tensor):
        """Consecutive runs of ``order`` (longest first): ``batch_size`` rows, or as many as fit
        ``max_batch_tokens`` at the run's first (longest) width."""
        if self.max_batch_tokens is None:
            for start in range(0, len(order), self.batch_size):
                yield order[start : start + self.batch_size]
            return
        start = 0
        while start < len(order):
            width = max(int(lengths[order[start]]), 1)
            size = max(1, self.max_batch_tokens // width)
            yield order[start : start + size]
            start += size


def route_modules(model, task: Task) -> list:
    """The modules that embed ``task`` texts, flattening a ``Router`` to its ``task`` route."""
    from sentence_transformers.base.modules import Router

    modules: list[torch.nn.Module] = []
    for module in model:
        if isinstance(module, Router):
            # A ModuleDict of module lists; a missing route (no default) is a KeyError as in Router.
            routes = cast("Mapping[str | None, Sequence[torch.nn.Module]]", module.sub_modules)
            modules.extend(routes[task] if task in routes else routes[module.default_route])
        else:
            modules.append(module)
    return modules


def embedding_dimension(model) -> int:
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return int(getter())


def _select(features: dict, rows: torch.Tensor, width: int, n: int) -> dict:
    """Take ``rows`` of every per-text tensor, cut to ``width`` tokens (right padding)."""
    batch = {}
    for key, value in features.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == n:
            value = value[rows]
            if value.dim() == 2:
                value = value[:, :width]
        batch[key] = value
    return batch
