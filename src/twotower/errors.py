"""Errors that reach the user as one clear line.

The CLI exits with status 2 for a :class:`TwotowerError` (input or configuration the user can
fix) and with status 3 for a :class:`TrainingFault` (the run itself failed; nothing was wrong
with its input).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class TwotowerError(Exception):
    """Base class: anything the user can fix (bad input, bad configuration)."""


class TrainingFault(Exception):
    """Training stopped on a numerical fault (a non-finite loss); its checkpoints are kept."""


class InputError(TwotowerError):
    """Bad input data, located by file, line and field where known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "")
        if field is not None:
            where = f"{where} field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(TwotowerError, ValueError):
    """An invalid option, recipe key or combination of options (also a ``ValueError``).
    ``key``: the recipe key it is about, as a path (``("refresh", "mode")``, ``("loss", 1)``),
    where one is known, so that a recipe's error names that key's line."""

    def __init__(self, message: str = "", *, key: tuple[str | int, ...] | None = None) -> None:
        super().__init__(message)
        self.key = key


class ResolutionError(TwotowerError):
    """A model or collection name that could not be found."""


def did_you_mean(name: object, valid: Iterable[str], *, quote: str = "'") -> str:
    """``" (did you mean 'x'?)"`` for the valid name nearest to ``name``, or ``""``."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f" (did you mean {quote}{close[0]}{quote}?)" if close else ""


def check_percentile(name: str, value: float | None) -> None:
    """Refuse a percentile cut outside [0, 100): the one bound of every such option (recipe
    fields say the same with ``Field(ge=0, lt=100)``); None passes (no cut)."""
    if value is not None and not 0 <= value < 100:
        raise ConfigError(f"{name} must be in [0, 100), got {value:g}")


def check_integer(name: str, value: object, *, minimum: int, optional: bool = False) -> None:
    """Refuse anything but an integer (not a bool) of at least ``minimum`` (None if ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}")


class DiskFullError(TwotowerError):
    """A write stopped by a full disk (or quota); the file it was replacing is left as it was."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"{path}: disk full while writing it (the previous file, if any, is left as it was);"
            " free some space and run the command again"
        )
