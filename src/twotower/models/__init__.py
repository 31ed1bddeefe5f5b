"""Model resolution (offline included), encoding and the embedding cache."""

from twotower.models.encoder import Encoder, load_sentence_transformer
from twotower.models.resolve import resolve_model

__all__ = ["Encoder", "load_sentence_transformer", "resolve_model"]
