"""YAML files read with the line of every key, so an error can name the file and line.

Recipes and the loss specs inside them are validated after loading; :func:`line_of` finds the
line of the deepest known part of an error's location (a key, or a list entry such as the
second loss of ``loss:``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from twotower.errors import ConfigError

KeyLines = dict[tuple, int]


def read_yaml(path: Path, what: str = "file") -> tuple[Any, KeyLines]:
    """The document of ``path`` (safe loader) and the 1-based line of each key path.

    Errors (missing file, invalid UTF-8, invalid YAML) are one line naming file and line.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + 3 * raw.startswith(b"\xef\xbb\xbf")
        line = raw[:offset].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[offset]:02x})") from None
    try:
        data = yaml.safe_load(text)
        lines = key_lines(yaml.compose(text)) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    return data, lines


def key_lines(node: yaml.Node | None, prefix: tuple = ()) -> KeyLines:
    """Map each key path of a YAML document (list entries by index) to its 1-based line."""
    lines: KeyLines = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, key_node.value)
            lines[path] = key_node.start_mark.line + 1
            lines.update(key_lines(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*prefix, index)
            lines[path] = item.start_mark.line + 1
            lines.update(key_lines(item, path))
    return lines


def line_of(lines: KeyLines, location: Sequence) -> int | None:
    """The line of the deepest prefix of ``location`` that the document has."""
    location = tuple(location)
    for n in range(len(location), 0, -1):
        if location[:n] in lines:
            return lines[location[:n]]
    return None
