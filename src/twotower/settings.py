"""Settings read from the environment: where caches live, whether to stay offline, which
process of a torchrun launch this is, and which back-end encodes.

One definition of each, used by data, models, negatives and teachers alike.
"""

from __future__ import annotations

import os
from pathlib import Path

# Any of these set to 1 means: never download a collection or a model.
OFFLINE_VARIABLES = ("TWOTOWER_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def cache_root() -> Path:
    """``$TWOTOWER_CACHE``, else ``$XDG_CACHE_HOME/twotower`` (``~/.cache/twotower``)."""
    base = os.environ.get("TWOTOWER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "twotower"
    )
    return Path(base)


def offline() -> bool:
    """Whether downloads are off: ``TWOTOWER_OFFLINE=1``, or Hugging Face's own offline flags."""
    return any(os.environ.get(name) == "1" for name in OFFLINE_VARIABLES)


def process_rank() -> int:
    """This process's rank under torchrun (``$RANK``); 0 in a plain run."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes torchrun started (``$WORLD_SIZE``); 1 in a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or a plain run): the process that writes shared files, evaluates and reports."""
    return process_rank() == 0


def backend_override() -> str | None:
    """``$TWOTOWER_BACKEND`` if set: ``torch`` forces torch's own path for every inference-only
    encode (evaluation, mining, refresh rounds, teachers, probes); ``auto`` or ``openvino``."""
    return os.environ.get("TWOTOWER_BACKEND") or None
