"""How twotower writes its files: atomically, with a checksum where the file is reused, under a
lock where processes share it; so a damaged, half-written or stale file is caught before use.

* :func:`atomic_write` writes to a temporary file beside the target (unique per process and
  call), flushes and fsyncs it, and renames it over the target: a reader sees the old file or
  the new one, never half of one, and a kill, an exception or a full disk leaves the old file
  as it was (a full disk is a :class:`~twotower.errors.DiskFullError` naming the file).
* ``checksum=True`` also writes ``NAME.sha256`` (the SHA-256 of the new bytes) before the
  rename; :func:`checksum_problem` tells whether a file still matches it.
* :func:`write_manifest` completes a multi-file result (a trained model, a refresh round, a
  cache entry, a kept file and its settings) with the checksum of each file it lists, and
  :func:`read_manifest` checks them all before the result is reused.
* :func:`file_lock` serialises the processes that build one shared cache entry (``NAME.lock``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

from twotower.errors import DiskFullError

try:
    import fcntl
except ImportError:  # not on Windows: entries are still published atomically, just not locked
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}


def file_sha256(path: Path) -> str:
    """SHA-256 of the bytes of ``path``, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


def raise_if_disk_full(exc: BaseException, path: str | Path) -> None:
    """Turn a full disk or quota (``ENOSPC``, ``EDQUOT``) while writing ``path`` into one line."""
    if is_disk_full(exc):
        raise DiskFullError(path) from exc


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def checksum_problem(path: Path) -> str | None:
    """None if ``path`` matches its ``NAME.sha256``; else what is wrong, for a warning."""
    sidecar = checksum_path(path)
    try:
        expected = sidecar.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return "has no checksum"
    try:
        actual = file_sha256(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None if actual == expected else "does not match its checksum"


MANIFEST_FILES = "files"  # a manifest's field: each file's path (from its folder) -> SHA-256


def write_manifest(path: str | Path, fields: Mapping[str, Any], files: Iterable[Path]) -> None:
    """Write the manifest that completes what it lists, last: ``fields`` and, under ``"files"``,
    the SHA-256 of each of ``files`` by its path from the manifest's folder; JSON, written by
    :func:`atomic_write` with its own checksum beside it (``NAME.sha256``)."""
    path = Path(path)
    own = {path, checksum_path(path)}  # an earlier manifest in the listed folder is not content
    sums = {
        Path(f).relative_to(path.parent).as_posix(): file_sha256(Path(f))
        for f in files
        if Path(f) not in own
    }
    text = json.dumps({**fields, MANIFEST_FILES: sums}, indent=2, default=str) + "\n"
    with atomic_write(path, "wb", checksum=True) as handle:
        handle.write(text.encode())


def read_manifest(
    path: str | Path, *, complete: bool = False
) -> tuple[dict[str, Any] | None, str | None]:
    """``(fields, problem)`` of a manifest of :func:`write_manifest`. ``problem`` is None when
    the manifest and every file it lists match their checksums and, with ``complete``, no other
    file lies under its folder; else what is wrong, for a warning. ``fields`` (without the
    checksums) is None when the manifest is missing or cannot be read."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path.name} is missing"
    try:
        fields = json.loads(path.read_text())
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return None, f"{path.name} cannot be read ({exc})"
    files = fields.pop(MANIFEST_FILES, None)
    problem = checksum_problem(path)
    if problem is not None:
        return fields, f"{path.name} {problem}"
    if not isinstance(files, dict):
        return fields, f"{path.name} lists no files"
    root = path.parent
    for name, digest in files.items():
        try:
            matches = file_sha256(root / name) == digest
        except OSError:
            matches = False
        if not matches:
            return fields, f"{name} does not match its checksum"
    if complete:
        own = {path.name, checksum_path(path).name}
        for found in sorted(root.rglob("*")):
            name = found.relative_to(root).as_posix()
            if found.is_file() and name not in files and name not in own:
                return fields, f"{name} is not in {path.name}"
    return fields, None


def _fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable; some file systems cannot open a folder: no matter."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _HashingWriter:
    """A binary handle that hashes what passes through it, so a checksum costs no second read
    of a multi-GB file."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self.handle, name)


@contextlib.contextmanager
def atomic_write(
    path: str | Path, mode: str = "w", *, encoding: str = "utf-8", checksum: bool = False
) -> Iterator[IO[Any]]:
    """A handle whose bytes replace ``path`` when the block ends without an exception.

    ``mode`` is ``"w"`` (text, ``encoding``) or ``"wb"``. The temporary file
    (``.NAME.PID-RANDOM.tmp``) is removed on any exception, leaving the previous ``path`` as it
    was; a full disk is raised as :class:`~twotower.errors.DiskFullError`. With ``checksum``,
    ``NAME.sha256`` is written (atomically) before the rename.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    if checksum and mode != "wb":
        raise ValueError("atomic_write: a checksum is of bytes: use mode 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            hashing = _HashingWriter(handle) if checksum else None
            yield handle if hashing is None else cast(IO[Any], hashing)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():  # keep the permissions a user gave the file it replaces
            with contextlib.suppress(OSError):
                shutil.copymode(path, tmp)
        if hashing is not None:
            with atomic_write(checksum_path(path)) as sidecar:
                sidecar.write(hashing.digest.hexdigest() + "\n")
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise_if_disk_full(exc, path)
        raise
    _fsync_directory(path.parent)


@contextlib.contextmanager
def file_lock(path: str | Path, *, shared: bool = False) -> Iterator[None]:
    """Hold ``NAME.lock`` beside ``path``: exclusive to build the entry, shared to read it.

    A second process waits (saying so once) until the first is done; the lock goes with the
    process, even killed. Where the file system has no locks, or a shared lock cannot be made
    in a read-only cache, the block runs unlocked (entries are still published atomically).
    """
    lock = Path(path).with_name(Path(path).name + ".lock")
    if fcntl is None:
        yield
        return
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if not shared or exc.errno not in _READ_ONLY:
            raise
        yield  # a cache shared read-only: nobody writes it, so reading needs no lock
        return
    try:
        kind = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            try:
                fcntl.flock(fd, kind | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("%s: waiting for another process that is writing it", path)
                fcntl.flock(fd, kind)
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
            log.debug("%s: this file system has no locks; going on unlocked", lock)
        yield
    finally:
        os.close(fd)
