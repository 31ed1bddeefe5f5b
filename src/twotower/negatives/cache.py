"""On-disk cache of mined tables, keyed by every input of the mining; the statistics file, written
last, is the entry's manifest (:func:`~twotower.data.files.write_manifest`): it holds the table's
SHA-256, so a damaged or half-written table is mined again, never used.

``<cache_root>/negatives/<key>.jsonl`` (the table, in the negatives file format) and
``<key>.json`` (the statistics of the run that mined it, with its ``.sha256``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twotower.data.collection import Collection
from twotower.data.files import file_lock, read_manifest, write_manifest
from twotower.errors import InputError
from twotower.negatives.io import read_negatives, write_negatives
from twotower.negatives.table import Kind, NegativesTable
from twotower.settings import cache_root

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: negative queries are the first of a per-document shuffle


def negatives_cache_dir() -> Path:
    return cache_root() / "negatives"


def mining_key(collection: Collection, anchors: Sequence[str], settings: Mapping[str, Any]) -> str:
    """Digest of the corpus, the anchors' texts and positives (the split's qrels), and ``settings``."""
    digest = hashlib.sha256()
    digest.update(f"v{FORMAT_VERSION}\0{collection.corpus.fingerprint}\0".encode())
    for qid in sorted(collection.qrels):
        digest.update(f"{qid}\0{collection.queries.get(qid, '')}\0".encode())
        for doc_id, grade in sorted(collection.qrels[qid].items()):
            digest.update(f"{doc_id}\0{grade}\0".encode())
    for anchor in anchors:
        digest.update(f"{anchor}\0".encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def load_cached(key: str, kind: Kind) -> tuple[NegativesTable, dict[str, Any]] | None:
    """The cached table and statistics of ``key``; None (after one warning if the entry is
    damaged: a table that does not match its checksum, statistics that cannot be read)."""
    table_path = negatives_cache_dir() / f"{key}.jsonl"
    stats_path = negatives_cache_dir() / f"{key}.json"
    if not table_path.is_file():
        return None
    with file_lock(table_path, shared=True):  # not while another process stores the entry
        stats, problem = read_manifest(stats_path)
        if problem is not None or stats is None:
            log.warning("%s: %s; mining again", table_path, problem)
            return None
        try:
            table = read_negatives(table_path, kind=kind)
        except InputError as exc:  # a checksummed table this version cannot read
            log.warning("%s cannot be read (%s): mining again", table_path, exc)
            return None
    return table, stats


def store(key: str, table: NegativesTable, stats: Mapping[str, Any]) -> None:
    """Write the table, then the statistics with its checksum (last: they complete the entry);
    a process storing the same key at once waits, so the two files are one run's."""
    table_path = negatives_cache_dir() / f"{key}.jsonl"
    with file_lock(table_path):
        write_negatives(table_path, table)
        write_manifest(negatives_cache_dir() / f"{key}.json", stats, [table_path])
