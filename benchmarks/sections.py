"""BENCHMARKS.md's generated sections: each benchmark script owns the text between its markers
``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; everything else in the page is kept."""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(path: Path, text: str, name: str) -> None:
    """Replace section ``name`` (markers included) with ``text``, or append it; atomically."""
    start_mark, end_mark = markers(name)
    if not text.startswith(start_mark) or not text.rstrip().endswith(end_mark):
        raise ValueError(f"the section must open and close with the {name} markers")
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    start, end = old.find(start_mark), old.find(end_mark)
    if start != -1 and end > start:
        new = old[:start] + text.rstrip() + old[end + len(end_mark) :]
    else:
        new = old.rstrip() + "\n\n" + text.rstrip() + "\n"
    if not new.endswith("\n"):
        new += "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)
