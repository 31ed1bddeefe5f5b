"""Resuming a generation job: which tasks an earlier run's output already holds, with torn and
damaged lines repaired (cut off, or moved aside to ``OUTPUT.damaged.jsonl``, never lost) and
a file written with other settings refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from twotower.data.files import atomic_write
from twotower.data.jsonl import line_checksum_matches
from twotower.errors import ConfigError, InputError

log = logging.getLogger(__name__)

DAMAGED_SUFFIX = ".damaged.jsonl"


def damaged_path(output: str | Path) -> Path:
    """``queries.jsonl`` → ``queries.damaged.jsonl``: where resume moves damaged lines."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl") + DAMAGED_SUFFIX)


def read_done(path: Path, settings: dict[str, Any] | None = None) -> set[tuple[str, str, int]]:
    """The (doc id, type, sample) tasks a previous run wrote to ``path``.

    Every line carries a checksum of its fields: a line that does not match it, has lost it or
    is not JSON (a flipped byte, a torn write) is moved to ``NAME.damaged.jsonl`` with one
    warning and its task generated again; a last line cut short by a kill is cut off and
    generated again. A file none of whose lines has a checksum was not written by
    ``twotower generate`` and is refused untouched (:class:`InputError`). With ``settings``, a
    file written with other generator, prompt or sampling settings is refused: one file, one
    configuration.
    """
    done: set[tuple[str, str, int]] = set()
    if not path.is_file():
        return done
    size = path.stat().st_size
    cut_at = None
    checksummed = False
    damaged: dict[int, tuple[int, int]] = {}  # line number → (start, end) offsets
    with path.open("rb") as handle:
        offset = 0
        for line_number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            try:
                obj = json.loads(raw) if raw.strip() else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                obj = False
            if not raw.endswith(b"\n") or (obj is False and offset == size):
                log.warning(
                    "%s:%d: cutting off a truncated last line (it is generated again)",
                    path,
                    line_number,
                )
                cut_at = start
                break
            if obj is None:
                continue
            matches = line_checksum_matches(obj) if isinstance(obj, dict) else None
            checksummed = checksummed or matches is not None
            if not matches:
                damaged[line_number] = (start, offset)
                continue
            try:
                key = (str(obj["doc_id"]), str(obj["type"]), int(obj["sample"]))
            except (KeyError, TypeError, ValueError):
                raise InputError(
                    "not a line of twotower generate (needs doc_id, type and sample)",
                    path=path,
                    line=line_number,
                ) from None
            if settings is not None:
                check_settings(obj, settings, path, line_number)
                settings = None  # one line per file suffices: a file has one configuration
            done.add(key)
    if damaged and not checksummed:
        raise InputError(
            "no line carries a checksum: not a file of twotower generate (write to another"
            " --output)",
            path=path,
            line=min(damaged),
        )
    if damaged:
        _move_damaged_lines(path, damaged, cut_at if cut_at is not None else size)
    elif cut_at is not None:
        with path.open("r+b") as handle:
            handle.truncate(cut_at)
    return done


def _move_damaged_lines(path: Path, damaged: dict[int, tuple[int, int]], end: int) -> None:
    """Append the ``damaged`` lines to the damaged file (nothing is lost) and rewrite ``path``
    with its other lines up to offset ``end``, atomically."""
    spans = sorted(damaged.values())
    with path.open("rb") as source:
        with damaged_path(path).open("ab") as aside:
            for start, stop in spans:
                source.seek(start)
                aside.write(source.read(stop - start))
        with atomic_write(path, "wb") as rewritten:
            position = 0
            for start, stop in [*spans, (end, end)]:
                source.seek(position)
                left = start - position
                while left > 0:  # in blocks: a generated file may be larger than memory
                    block = source.read(min(left, 1 << 24))
                    rewritten.write(block)
                    left -= len(block)
                position = stop
    numbers = sorted(damaged)
    shown = ", ".join(map(str, numbers[:10])) + (" …" if len(numbers) > 10 else "")
    log.warning(
        "%s: %d damaged line(s) (line %s: malformed or not matching their checksum) moved to"
        " %s; their tasks are generated again",
        path,
        len(numbers),
        shown,
        damaged_path(path),
    )


def check_settings(obj: dict[str, Any], settings: dict[str, Any], path: Path, line: int) -> None:
    differ = [k for k, v in settings.items() if obj.get(k) != v]
    if differ:
        details = "; ".join(
            f"{k} {json.dumps(obj.get(k))} there, {json.dumps(settings[k])} now" for k in differ
        )
        raise ConfigError(
            f"{path}:{line}: written with other settings ({details}); resume with the same "
            "generator and options, or write to another --output"
        )
