"""A run's checkpoints: the newest one written whole, and which to resume from."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from twotower.errors import ConfigError

log = logging.getLogger(__name__)


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint that was written whole; a kill mid-save leaves a partial one.

    The trainer writes ``trainer_state.json`` last, so a checkpoint without a readable one is
    incomplete: it is renamed ``*.incomplete`` (kept for inspection, skipped by rotation).
    """
    if not folder.is_dir():
        return None
    candidates = sorted(
        (p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for candidate in candidates:
        try:
            json.loads((candidate / "trainer_state.json").read_text())
            return str(candidate)
        except (OSError, ValueError):
            log.warning("%s was not written completely (interrupted save); skipping it", candidate)
            candidate.rename(candidate.with_name(candidate.name + ".incomplete"))
    return None


def checkpoint_to_resume(checkpoints: Path, resume: bool | None) -> str | None:
    """``resume``: True continues from the last complete checkpoint (an error if there is none),
    False starts afresh (old checkpoints removed), None resumes when one exists."""
    last = last_complete_checkpoint(checkpoints)
    if resume and last is None:
        raise ConfigError(f"--resume: no checkpoint in {checkpoints}")
    if resume is False:
        if checkpoints.exists():
            shutil.rmtree(checkpoints)
        return None
    if last:
        log.info("resuming from %s", last)
    return last
