"""On-disk cache of corpus embeddings, keyed by encoder fingerprint and corpus content."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from twotower.data.beir import Corpus
from twotower.data.locate import cache_root
from twotower.models.encoder import Encoder

log = logging.getLogger(__name__)


def embedding_cache_dir() -> Path:
    return cache_root() / "embeddings"


def encode_corpus(encoder: Encoder, corpus: Corpus, *, use_cache: bool = True) -> tuple[np.ndarray, bool]:
    """Document embeddings of ``corpus`` in corpus order, and whether they came from the cache."""
    path = embedding_cache_dir() / f"{encoder.fingerprint_for('document')}-{corpus.fingerprint[:24]}.npy"
    if use_cache and path.is_file():
        embeddings = np.load(path)
        if embeddings.shape[0] == len(corpus):
            return embeddings, True
        log.warning("%s: stale cache entry (shape %s), re-encoding", path, embeddings.shape)
    embeddings = encoder.encode_documents(corpus.texts)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            np.save(handle, embeddings)
        tmp.replace(path)
    return embeddings, False
