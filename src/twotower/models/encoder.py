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
from typing import Any, Literal, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from twotower.errors import ConfigError, ResolutionError
from twotower.models.adapter import ResidualAdapter, adapters, bypassed
from twotower.models.backends import Backend, batch_runner, resolve_backend
from twotower.models.resolve import resolve_model

log = logging.getLogger(__name__)

Task = Literal["query", "document"]
Precision = Literal["fp32", "bf16", "auto"]

# Rows per batch and token budget of the keys written before batching was part of them.
DEFAULT_BATCHING = (64, None)

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
    trust = trust_remote_code or _only_library_modules(path)
    try:
        return SentenceTransformer(path, device=device, trust_remote_code=trust)
    except OSError as exc:  # hub misses and unreadable folders; one line for the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ResolutionError(f"could not load model '{name_or_path}' ({path}): {reason}") from None


def _only_library_modules(path: str) -> bool:
    """Whether a local model's module classes are all sentence-transformers' or twotower's own
    (a document adapter): installed code, which sentence-transformers would refuse to import
    without ``trust_remote_code`` as it would a repository's."""
    import json
    from pathlib import Path

    folder = Path(path)
    if not folder.is_dir():
        return False
    refs: list[str] = []
    for config in [*folder.glob("**/modules.json"), *folder.glob("**/router_config.json")]:
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            return False
        entries = data if isinstance(data, list) else [data]
        for entry in entries:
            if isinstance(entry, dict):
                refs += [entry["type"]] if isinstance(entry.get("type"), str) else []
                refs += [v for v in (entry.get("types") or {}).values() if isinstance(v, str)]
    ours = [r for r in refs if not r.startswith("sentence_transformers.")]
    return bool(ours) and all(r.startswith("twotower.") for r in ours)


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
        backend: Backend = "auto",
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
        self._fingerprints: dict[tuple[str, bool], str] = {}
        self._weight_digests: dict[tuple[int, ...], hashlib._Hash] = {}
        # torch or openvino (models/backends.py); the compiled routes by their fingerprint.
        self.backend = resolve_backend(backend, self.device)
        self._graphs: dict[str, Any] = {}

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

    @property
    def batching(self) -> tuple[int, int | None]:
        return self.batch_size, self.max_batch_tokens

    @cached_property
    def fingerprint(self) -> str:
        """Identifies both towers' weights and every setting that changes an embedding."""
        return hashlib.sha256(
            (self.fingerprint_for("query") + self.fingerprint_for("document")).encode()
        ).hexdigest()[:24]

    def fingerprint_for(self, task: Task, *, adapted: bool = True) -> str:
        """Identifies what embeds ``task`` texts: that route's weights and settings only.

        A separate-towers model whose document tower equals a shared model's network gets
        that model's document fingerprint, so its corpus embeddings come from the cache.
        ``adapted=False``: the route without its residual adapters (``models/adapter.py``), the
        key of the embeddings the cache keeps for it; a route without adapters has one key.
        """
        if (task, adapted) not in self._fingerprints:
            modules = route_modules(self.model, task)
            heads = adapters(modules)
            body = [m for m in modules if not isinstance(m, ResidualAdapter)]
            route = tuple(id(m) for m in body)
            weights = self._weight_digests.get(route)
            if weights is None:  # a shared network: both routes hash the weights once
                weights = hashlib.sha256()
                for position, module in enumerate(body):
                    _hash_module(weights, module, str(position))
                self._weight_digests[route] = weights
            digest = weights.copy()
            settings = (self.max_length, self.prompts[task], self.normalize, self.use_bf16())
            # torch's keys stay those written before there were back-ends.
            backend = () if self.backend == "torch" else (self.backend,)
            digest.update(repr(settings + backend).encode())
            if self.use_bf16() and self.batching != DEFAULT_BATCHING:
                # bf16 rounding depends on the padded width a text shares (differences up to
                # 1e-3 between batch sizes): other batching, other embeddings, another key.
                digest.update(repr(self.batching).encode())
            if adapted:
                for position, head in enumerate(heads):
                    _hash_module(digest, head, f"adapter{position}")
                    digest.update(repr(head.residual_scale).encode())
            self._fingerprints[task, adapted] = digest.hexdigest()[:24]
        return self._fingerprints[task, adapted]

    def route_adapters(self, task: Task) -> list[ResidualAdapter]:
        """The residual adapters ending ``task``'s route (models/adapter.py), if any."""
        return adapters(route_modules(self.model, task))

    def adapt(self, task: Task, embeddings: np.ndarray) -> np.ndarray:
        """``embeddings`` of the route without its adapters, through them (unchanged if none)."""
        heads = self.route_adapters(task)
        if not heads:
            return embeddings
        out = np.empty(embeddings.shape, dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(embeddings), 65536):  # bounded memory on large corpora
                block = torch.from_numpy(np.asarray(embeddings[start : start + 65536]))
                block = block.to(self.device, torch.float32)
                for head in heads:
                    block = head.adapt(block)
                out[start : start + len(block)] = block.cpu().numpy()
        return out

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, task="query")

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, task="document")

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], *, task: Task, desc: str | None = None, adapted: bool = True
    ) -> np.ndarray:
        """Embeddings of ``texts`` in input order. Each distinct text is tokenised and encoded
        once; texts are sorted by token length so a batch pads little. The route's residual
        adapters run after the network, in fp32; ``adapted=False`` leaves them out."""
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
        heads = self.route_adapters(task)
        run = batch_runner(self, task)  # torch, or this route's exported graph (no adapters)
        with progress, autocast, bypassed(heads):
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
                    embeddings = run(batch)
                    if self.normalize:
                        embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
                    output[block_start + rows.numpy()] = embeddings.cpu().numpy()
                    progress.update(len(rows))
        if adapted:
            output = self.adapt(task, output)
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


def _hash_module(digest, module: torch.nn.Module, prefix: str) -> None:
    for key, tensor in module.state_dict().items():
        digest.update(f"{prefix}.{key}".encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(memoryview(tensor.detach().cpu().contiguous().view(torch.uint8).numpy()))


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
