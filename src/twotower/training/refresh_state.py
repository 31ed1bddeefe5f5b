"""What a checkpoint keeps of refresh rounds, read back on ``--resume``: the refresher's state in
the trainer's checkpoint, and the refresh log as that checkpoint saw it."""

from __future__ import annotations

import json
from pathlib import Path

from twotower.data.files import atomic_write

# The trainer keeps a callback's state under its class name (refresh_callback.RefreshCallback).
CALLBACK_NAME = "RefreshCallback"


def checkpoint_state(checkpoint: str | Path) -> dict | None:
    """The refresher's state a checkpoint holds (None for a checkpoint written without one)."""
    trainer_state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    stored = (trainer_state.get("stateful_callbacks") or {}).get(CALLBACK_NAME)
    return stored.get("attributes") if isinstance(stored, dict) else None


def forget_rounds_after(log_path: Path, launched: int, adopted: set[int]) -> None:
    """Rewrite ``log_path`` (refresh_log.jsonl) as the checkpoint saw it: the interrupted run's lines for
    rounds the resumed run computes again would show those rounds twice in report.md."""
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        generation = entry.get("generation", 0)
        if generation in adopted or ("failed" in entry and generation <= launched):
            kept.append(line)
    with atomic_write(log_path) as handle:
        handle.write("".join(line + "\n" for line in kept))
