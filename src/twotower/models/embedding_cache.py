"""On-disk cache of embeddings, keyed by the encoding route's fingerprint and the texts' content.

Corpora are keyed by their content fingerprint; query sets by a hash of their texts. A second
evaluation (or mining run) of the same model on the same data then encodes nothing. An entry
holds a route's embeddings before its residual adapters (``models/adapter.py``), which are
applied on reading: a model trained with an adapter over a frozen index reads its base model's
corpus entries.

Every entry is written atomically (:func:`twotower.data.files.atomic_write`) with a SHA-256 of
its bytes beside it (``NAME.npy.sha256``); an entry whose bytes do not match (a flipped byte, a
truncated copy, a write cut short) or that has no checksum is reported in one line and encoded
again, never used. Verifying reads the entry once more (about a second per GB). Processes that
share the cache encode an entry once (``NAME.npy.lock``, see :func:`encode_cached`).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from twotower.data.beir import Corpus
from twotower.data.files import atomic_write, checksum_problem, file_lock
from twotower.models.backends import prepare_backend
from twotower.models.encoder import Encoder, Task
from twotower.settings import cache_root

log = logging.getLogger(__name__)


def embedding_cache_dir() -> Path:
    return cache_root() / "embeddings"


def texts_fingerprint(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


# Larger sets are encoded in chunks of this many texts, each saved as it finishes, so an
# interrupted encoding (hours for MS MARCO's 8.8M passages) resumes from its last chunk.
RESUME_CHUNK = 20_000


def _save(path: Path, embeddings: np.ndarray) -> None:
    """Write atomically with its checksum: a kill mid-write leaves no truncated file under the
    final name, and an entry renamed without its checksum is detected on load."""
    with atomic_write(path, "wb", checksum=True) as handle:
        np.save(handle, embeddings)


def _load_verified(path: Path) -> np.ndarray | None:
    """The entry at ``path`` if its bytes match its checksum; None (after one warning) if not."""
    problem = checksum_problem(path)
    if problem is not None:
        log.warning("%s %s (corrupted or cut short): encoding again", path, problem)
        return None
    try:
        # Copy-on-write mapping: the pages are read as search touches them and shared with other
        # processes mapping the same entry, and callers may still write to the array.
        return np.load(path, mmap_mode="c")
    except (ValueError, OSError) as exc:  # a checksummed file numpy cannot read: never used
        log.warning("%s cannot be read (%s): encoding again", path, exc)
        return None


def _encode_in_chunks(
    encoder: Encoder, texts: Sequence[str], task: Task, parts: Path
) -> np.ndarray:
    starts = range(0, len(texts), RESUME_CHUNK)
    ranges = [(start, min(start + RESUME_CHUNK, len(texts))) for start in starts]
    saved = sum((parts / f"{start}-{end}.npy").is_file() for start, end in ranges)
    if saved:
        log.info("resuming an interrupted encoding: %d of %d chunks were saved", saved, len(ranges))
    name = "queries" if task == "query" else "documents"
    chunks = []
    for number, (start, end) in enumerate(ranges, start=1):
        part = parts / f"{start}-{end}.npy"
        saved_chunk = _load_verified(part) if part.is_file() else None
        if saved_chunk is not None and saved_chunk.shape[0] == end - start:
            chunks.append(saved_chunk)
            continue
        embeddings = encoder.encode(
            texts[start:end],
            task=task,
            desc=f"Encoding {name} ({number}/{len(ranges)})",
            adapted=False,
        )
        _save(part, embeddings)
        chunks.append(embeddings)
    return np.concatenate(chunks)


def cache_path(encoder: Encoder, task: Task, content_key: str) -> Path:
    """Where the embeddings of ``encoder`` for ``task`` of the texts keyed ``content_key`` live
    (those of the route without its adapters)."""
    fingerprint = encoder.fingerprint_for(task, adapted=False)
    return embedding_cache_dir() / f"{fingerprint}-{content_key[:24]}.npy"


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _verified_entry(path: Path, rows: int) -> np.ndarray | None:
    """The entry at ``path`` if it is whole and holds ``rows`` rows; None (warned) if not."""
    if not path.is_file():
        return None
    embeddings = _load_verified(path)
    if embeddings is not None and embeddings.shape[0] != rows:
        log.warning("%s: stale cache entry (shape %s), re-encoding", path, embeddings.shape)
        return None
    return embeddings


def encode_cached(
    encoder: Encoder,
    texts: Sequence[str],
    task: Task,
    content_key: str,
    *,
    use_cache: bool = True,
    adapted: bool = True,
) -> tuple[np.ndarray, bool]:
    """Embeddings of ``texts`` in order, and whether they came from the cache (memory-mapped
    then: a corpus of 8.8M passages is not read into memory whole).

    Processes sharing the cache encode an entry once: the first holds ``NAME.lock`` while it
    encodes (and owns the ``.parts`` folder of a chunked encoding); the others wait for it and
    read its entry. ``adapted=False``: the embeddings before the route's adapters, as stored.
    """
    if not use_cache:
        return encoder.encode(texts, task=task, adapted=adapted), False
    entry, cached = _cached_entry(encoder, texts, task, content_key)
    return (encoder.adapt(task, entry) if adapted else entry), cached


def _cached_entry(
    encoder: Encoder, texts: Sequence[str], task: Task, content_key: str
) -> tuple[np.ndarray, bool]:
    path = cache_path(encoder, task, content_key)
    if path.is_file():
        with file_lock(path, shared=True):  # not while another process writes it
            embeddings = _verified_entry(path, len(texts))
        if embeddings is not None:
            return embeddings, True
    # To be encoded: ready the back-end first, as a failed export falls back to torch and so
    # changes the key the entry goes under (an OpenVINO key never holds torch's embeddings).
    prepare_backend(encoder, task, texts)
    if cache_path(encoder, task, content_key) != path:
        return _cached_entry(encoder, texts, task, content_key)
    seen = _signature(path)
    with file_lock(path):
        if _signature(path) != seen:  # another process wrote the entry while this one waited
            embeddings = _verified_entry(path, len(texts))
            if embeddings is not None:
                return embeddings, True
        if len(texts) <= RESUME_CHUNK:
            embeddings = encoder.encode(texts, task=task, adapted=False)
            _save(path, embeddings)
            return embeddings, False
        parts = path.with_suffix(".parts")
        embeddings = _encode_in_chunks(encoder, texts, task, parts)
        _save(path, embeddings)
        shutil.rmtree(parts, ignore_errors=True)
    return embeddings, False


def encode_corpus(
    encoder: Encoder, corpus: Corpus, *, use_cache: bool = True, adapted: bool = True
) -> tuple[np.ndarray, bool]:
    """Document embeddings of ``corpus`` in corpus order, and whether they came from the cache
    (``adapted=False``: before the document route's adapters)."""
    return encode_cached(
        encoder,
        corpus.texts,
        "document",
        corpus.fingerprint,
        use_cache=use_cache,
        adapted=adapted,
    )


def encode_queries(
    encoder: Encoder, texts: Sequence[str], *, use_cache: bool = True
) -> tuple[np.ndarray, bool]:
    """Query embeddings (a query set is small, but re-encoding it dominates a cached evaluation)."""
    return encode_cached(
        encoder, texts, "query", "q" + texts_fingerprint(texts), use_cache=use_cache
    )
