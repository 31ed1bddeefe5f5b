"""A cross-encoder teacher: any sentence-transformers ``CrossEncoder`` with one output label."""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Literal

import numpy as np
import torch

from twotower.errors import ConfigError
from twotower.models.resolve import resolve_model
from twotower.teachers.base import Teacher

# logits: the raw model output (what Margin-MSE distils; false-negative margins of about 3.0);
# sigmoid: squashed to (0, 1); model: whatever activation the model's configuration declares
# (exactly what ``CrossEncoder.predict`` returns by default).
Activation = Literal["logits", "sigmoid", "model"]


def load_cross_encoder(
    name_or_path: str,
    *,
    device: str | None = None,
    max_length: int | None = None,
    trust_remote_code: bool = False,
):
    from sentence_transformers import CrossEncoder

    path = resolve_model(name_or_path)
    return CrossEncoder(
        path, device=device, max_length=max_length, trust_remote_code=trust_remote_code
    )


class CrossEncoderTeacher(Teacher):
    """Scores pairs with a cross-encoder (e.g. ``cross-encoder/ms-marco-MiniLM-L-6-v2``).

    ``name_or_path`` is resolved offline-first with :func:`twotower.models.resolve_model`;
    remote code is never run unless ``trust_remote_code=True``.
    """

    kind = "cross_encoder"

    def __init__(
        self,
        name_or_path: str | None = None,
        *,
        model=None,
        device: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        activation: Activation = "logits",
        trust_remote_code: bool = False,
        show_progress: bool = True,
        use_cache: bool = True,
    ) -> None:
        if (name_or_path is None) == (model is None):
            raise ValueError("give exactly one of name_or_path and model")
        if activation not in ("logits", "sigmoid", "model"):
            raise ConfigError(
                f"unknown cross-encoder activation '{activation}' (logits, sigmoid or model)"
            )
        if model is None:
            assert name_or_path is not None  # exactly one of the two, checked above
            model = load_cross_encoder(
                name_or_path,
                device=device,
                max_length=max_length,
                trust_remote_code=trust_remote_code,
            )
        elif max_length is not None:
            model.max_seq_length = max_length
        if model.num_labels != 1:
            raise ConfigError(
                f"cross-encoder {name_or_path or 'model'} has {model.num_labels} output labels; a teacher needs one score per pair"
            )
        super().__init__(
            name=str(name_or_path or "cross-encoder"),
            batch_size=batch_size,
            show_progress=show_progress,
            use_cache=use_cache,
        )
        self.model = model
        self.activation = activation

    @property
    def activation_fn(self):
        if self.activation == "logits":
            return torch.nn.Identity()
        if self.activation == "sigmoid":
            return torch.nn.Sigmoid()
        return self.model.activation_fn

    @cached_property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key, tensor in self.model.state_dict().items():
            digest.update(key.encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        activation = type(self.activation_fn).__module__ + "." + type(self.activation_fn).__name__
        digest.update(repr((int(self.model.max_seq_length or 0), activation)).encode())
        return digest.hexdigest()[:24]

    def _score_batch(self, query_texts: list[str], doc_texts: list[str]) -> np.ndarray:
        pairs = [[q, d] for q, d in zip(query_texts, doc_texts, strict=True)]
        return self.model.predict(
            pairs,
            batch_size=self.batch_size,
            show_progress_bar=False,
            activation_fn=self.activation_fn,
            convert_to_numpy=True,
        )
