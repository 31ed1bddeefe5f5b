"""Line-numbered JSONL reading: every error names the file, line and field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    """Write rows atomically (temp file + rename) so an interrupted write loses nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count
