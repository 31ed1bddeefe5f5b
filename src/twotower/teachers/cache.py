"""On-disk cache of teacher scores: one SQLite file per teacher fingerprint.

Each row is keyed by a 16-byte BLAKE2b digest of the (query text, document text) pair, so
the cache holds no text and is shared by every file, split and command that scores the
same pairs with the same teacher. Location: ``<cache_root>/teacher_scores/<fingerprint>.sqlite``
(``$TWOTOWER_CACHE`` overrides the cache root).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path

from twotower.settings import cache_root

# SQLite's historical limit on bound parameters per statement is 999.
_CHUNK = 900


def score_cache_dir() -> Path:
    return cache_root() / "teacher_scores"


def pair_key(query_text: str, doc_text: str) -> bytes:
    """Digest of a (query, document) pair; length-prefixed so no two pairs collide by concatenation."""
    query = query_text.encode("utf-8")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(len(query)).encode())
    digest.update(b":")
    digest.update(query)
    digest.update(doc_text.encode("utf-8"))
    return digest.digest()


class ScoreCache:
    """Pair digest → float score for one teacher fingerprint."""

    def __init__(self, fingerprint: str, directory: Path | None = None) -> None:
        self.path = (directory or score_cache_dir()) / f"{fingerprint}.sqlite"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS scores (key BLOB PRIMARY KEY, score REAL NOT NULL) WITHOUT ROWID"
        )
        return connection

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, float]:
        if not keys or not self.path.is_file():
            return {}
        found: dict[bytes, float] = {}
        with closing(self._connect()) as connection:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                for key, score in connection.execute(
                    f"SELECT key, score FROM scores WHERE key IN ({marks})", chunk
                ):
                    found[bytes(key)] = float(score)
        return found

    def put_many(self, items: Iterable[tuple[bytes, float]]) -> None:
        rows = [(key, float(score)) for key, score in items]
        if not rows:
            return
        with closing(self._connect()) as connection, connection:
            connection.executemany("INSERT OR REPLACE INTO scores (key, score) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        if not self.path.is_file():
            return 0
        with closing(self._connect()) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
