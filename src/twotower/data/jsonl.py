"""Line-numbered JSONL reading (every error names the file, line and field), atomic writing, and
per-line checksums for files that grow a line at a time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twotower.data.files import atomic_write
from twotower.errors import InputError


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each line, streaming, without its line ending.

    UTF-8, with a byte-order mark at the start tolerated; a line that is not valid UTF-8 is an
    :class:`InputError` naming the line and column (decoding the whole file at once would
    only say "position 81234").
    """
    path = Path(path)
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                    path=path,
                    line=line_number,
                ) from None
            yield line_number, text.rstrip("\r\n")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line, streaming."""
    path = Path(path)
    for line_number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"malformed JSON ({exc.msg} at column {exc.colno})", path=path, line=line_number
            ) from None
        if not isinstance(obj, dict):
            raise InputError(
                f"expected a JSON object, got {type(obj).__name__}", path=path, line=line_number
            )
        yield line_number, obj


def require_string(
    obj: dict[str, Any], field: str, path: Path, line: int, *, optional: bool = False
) -> str:
    """Return ``obj[field]`` as a string; ids may be written as JSON numbers."""
    if field not in obj or obj[field] is None:
        if optional:
            return ""
        raise InputError("missing required field", path=path, line=line, field=field)
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(
            f"expected a string, got {type(value).__name__}", path=path, line=line, field=field
        )
    return str(value)


def write_jsonl(path: str | Path, rows: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> int:
    """Write rows atomically (:func:`~twotower.data.files.atomic_write`): an interrupted write
    or a full disk leaves the previous file as it was."""
    count = 0
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


LINE_CHECKSUM = "checksum"  # the field of a line's checksum (:func:`with_line_checksum`)


def _line_digest(obj: dict[str, Any]) -> str:
    fields = {k: v for k, v in obj.items() if k != LINE_CHECKSUM}
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_line_checksum(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with the first 16 hex digits of the SHA-256 of its other fields (canonical JSON)
    as ``"checksum"``, for a file appended to line by line, where a file checksum cannot be."""
    return {**obj, LINE_CHECKSUM: _line_digest(obj)}


def line_checksum_matches(obj: dict[str, Any]) -> bool | None:
    """Whether a line's fields match its checksum; None when it has none."""
    if LINE_CHECKSUM not in obj:
        return None
    return obj[LINE_CHECKSUM] == _line_digest(obj)
