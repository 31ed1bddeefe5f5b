"""On-disk cache of teacher scores: one SQLite file per teacher fingerprint.

Each row is keyed by a 16-byte BLAKE2b digest of the (query text, document text) pair and
carries a checksum of its key and score, so the cache holds no text and is shared by every file, split and command that scores the
same pairs with the same teacher. Location: ``<cache_root>/teacher_scores/<fingerprint>.sqlite``
(``$TWOTOWER_CACHE`` overrides the cache root).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import struct
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TypeVar

from twotower.errors import DiskFullError
from twotower.settings import cache_root

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLite's historical limit on bound parameters per statement is 999.
_CHUNK = 900
_TABLE = "checked_scores"
_UNCHECKED_TABLE = "scores"  # the table of the versions without row checksums
_SIDE = ("-journal", "-wal", "-shm")  # SQLite's files beside the database
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26  # SQLite's primary result codes


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


def row_checksum(key: bytes, score: float) -> bytes:
    """8-byte digest of a row's key and score, stored beside them: SQLite checks its pages'
    structure, not their values, so a flipped byte inside a score would be read as a score."""
    return hashlib.blake2b(key + struct.pack("<d", score), digest_size=8).digest()


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """ "database disk image is malformed" or "file is not a database"."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


class ScoreCache:
    """Pair digest → float score for one teacher fingerprint.

    Each row carries :func:`row_checksum`: a row that does not match it is reported (one
    warning per lookup) and scored again. A file SQLite finds damaged is reported in one line,
    removed and built again. SQLite's transactions keep a write cut short (a kill, a full
    disk) from showing, and its lock (waited on for up to a minute) lets processes share the
    file.
    """

    def __init__(self, fingerprint: str, directory: Path | None = None) -> None:
        self.path = (directory or score_cache_dir()) / f"{fingerprint}.sqlite"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60)
        try:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
            if _TABLE not in tables:
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {_TABLE} (key BLOB PRIMARY KEY,"
                    " score REAL NOT NULL, checksum BLOB NOT NULL) WITHOUT ROWID"
                )
            if _UNCHECKED_TABLE in tables:
                self._adopt_unchecked_rows(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _adopt_unchecked_rows(self, connection: sqlite3.Connection) -> None:
        """Keep the scores of a version without row checksums (hours of a cross-encoder), with
        checksums from now on: they are reused with one warning, as an older trained model is,
        rather than scored again."""
        rows = connection.execute(f"SELECT key, score FROM {_UNCHECKED_TABLE}").fetchall()
        with connection:
            connection.executemany(
                f"INSERT OR IGNORE INTO {_TABLE} (key, score, checksum) VALUES (?, ?, ?)",
                [(key, score, row_checksum(key, score)) for key, score in rows],
            )
            connection.execute(f"DROP TABLE {_UNCHECKED_TABLE}")
        log.warning(
            "%s: %d teacher scores written by a version without row checksums are reused"
            " (checksummed from now on; remove the file to score them again)",
            self.path,
            len(rows),
        )

    def _guarded(self, operation: Callable[[], T]) -> T:
        """Run ``operation``; a damaged file is removed (one warning) and it runs once more."""
        try:
            return operation()
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                log.warning(
                    "%s is damaged (%s): removed; its scores are computed again", self.path, exc
                )
                for path in (self.path, *(self.path.with_name(self.path.name + s) for s in _SIDE)):
                    path.unlink(missing_ok=True)
                return operation()
            if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc):
                raise DiskFullError(self.path) from exc
            raise

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, float]:
        if not keys:
            return {}
        return self._guarded(lambda: self._get_many(keys))

    def _get_many(self, keys: Sequence[bytes]) -> dict[bytes, float]:
        if not self.path.is_file():
            return {}
        found: dict[bytes, float] = {}
        damaged = 0
        with closing(self._connect()) as connection:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                for key, score, checksum in connection.execute(
                    f"SELECT key, score, checksum FROM {_TABLE} WHERE key IN ({marks})", chunk
                ):
                    key, score = bytes(key), float(score)
                    if bytes(checksum) == row_checksum(key, score):
                        found[key] = score
                    else:
                        damaged += 1
        if damaged:
            log.warning(
                "%s: %d cached scores do not match their checksum (damaged file): scoring them"
                " again",
                self.path,
                damaged,
            )
        return found

    def put_many(self, items: Iterable[tuple[bytes, float]]) -> None:
        rows = [(key, float(score), row_checksum(key, float(score))) for key, score in items]
        if rows:
            self._guarded(lambda: self._put_many(rows))

    def _put_many(self, rows: list[tuple[bytes, float, bytes]]) -> None:
        with closing(self._connect()) as connection, connection:
            connection.executemany(
                f"INSERT OR REPLACE INTO {_TABLE} (key, score, checksum) VALUES (?, ?, ?)", rows
            )

    def __len__(self) -> int:
        if not self.path.is_file():
            return 0
        return self._guarded(self._count)

    def _count(self) -> int:
        if not self.path.is_file():
            return 0
        with closing(self._connect()) as connection:
            return int(connection.execute(f"SELECT COUNT(*) FROM {_TABLE}").fetchone()[0])
