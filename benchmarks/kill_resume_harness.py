"""The kill-and-resume benchmark's harness (benchmarks/kill_resume.py): a command in a process of
its own whose log is read as it grows, the phase a run is in (read from its log and folder), the
SIGKILL aimed at a phase, and the comparisons of a resumed run with an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' helpers

from tests.conftest import last_logged_step  # noqa: E402

CLI = [sys.executable, "-m", "twotower.cli.main"]
TOLERANCE = 1e-4
POLL_S = 0.003


def child_env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TWOTOWER_CACHE": str(cache),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }


# --- processes ---------------------------------------------------------------------------------


class Child:
    """A command in a process of its own, its output in a log file read as it grows."""

    def __init__(self, command: list[str], log: Path, cache: Path) -> None:
        self.log_path = log
        self.handle = log.open("wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, env=child_env(cache), stdout=self.handle, stderr=subprocess.STDOUT
        )
        self.text = ""
        self._offset = 0

    def read(self) -> str:
        with self.log_path.open("rb") as handle:
            handle.seek(self._offset)
            new = handle.read()
        self._offset += len(new)
        self.text += new.decode(errors="replace")
        return self.text

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> list[psutil.Process]:
        """SIGKILL this process only; returns its children (a refresh round outlives it briefly)."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.handle.close()
        return children

    def finish(self, timeout: float = 900) -> int:
        code = self.process.wait(timeout=timeout)
        self.handle.close()
        self.read()
        return code


def wait_gone(processes: list[psutil.Process], timeout: float = 30) -> None:
    """Let the orphans of a killed trainer (a refresh round notices within half a second) exit
    before the resumed run starts, as a person restarting it would."""
    psutil.wait_procs(processes, timeout=timeout)


def run_to_end(command: list[str], log: Path, cache: Path) -> tuple[int, float, str]:
    child = Child(command, log, cache)
    code = child.finish()
    return code, child.elapsed, child.text


# --- phases ------------------------------------------------------------------------------------


def complete_checkpoints(run: Path) -> list[int]:
    found = []
    for path in (run / "checkpoints").glob("checkpoint-*"):
        number = path.name.split("-")[-1]
        if number.isdigit() and (path / "trainer_state.json").is_file():
            try:
                json.loads((path / "trainer_state.json").read_text())
            except ValueError:
                continue
            found.append(int(number))
    return sorted(found)


def round_running(run: Path) -> int | None:
    """The generation of a refresh round requested and not yet published, if any."""
    rounds = run / "refresh"
    if not rounds.is_dir():
        return None
    requested = sorted(int(p.stem.split("-")[-1]) for p in rounds.glob("request-*.json"))
    for generation in reversed(requested):
        if not (rounds / f"round-{generation:05d}" / "manifest.json").is_file():
            log = rounds / f"round-{generation:05d}.log"
            if log.is_file() and "Error" in log.read_text(errors="replace"):
                return None  # it failed
            return generation
        return None
    return None


def train_phase(run: Path, log: str, asynchronous: bool = False) -> str:
    """What the trainer was doing, from its log and the files of its run folder (an async
    round runs beside the steps; a sync one while training waits)."""
    if (run / "model").is_dir():
        return "final save"
    writing = [
        p
        for p in (run / "checkpoints").glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and not (p / "trainer_state.json").is_file()
    ]
    if writing:
        return "checkpoint write"
    if "training on" not in log:
        if "Encoding" in log:
            return "mining (corpus encoded)"
        return "start (imports, loading)"
    round_phase = "step, round running" if asynchronous else "refresh round"
    generation = round_running(run)
    if last_logged_step(run) == 0:
        return "trainer setup" if generation is None else round_phase
    return "step" if generation is None else round_phase


def generate_phase(output: Path) -> str:
    if not output.is_file() or output.stat().st_size == 0:
        return "start (imports, loading)"
    return "writing batches"


def eval_phase(log: str, cache: Path) -> str:
    if list((cache / "embeddings").glob("*.tmp")) or list((cache / "embeddings").glob("*/*.tmp")):
        return "cache entry written"
    encoding = [line for line in log.replace("\r", "\n").splitlines() if "Encoding" in line]
    if not encoding:
        return "start (imports, loading)"
    last = encoding[-1]
    if "documents" in last and "(" in last:
        chunk = last.split("(")[1].split(")")[0]
        return f"corpus encoded (chunk {chunk})"
    return "queries encoded" if "queries" in last else "corpus encoded"


# --- comparisons -------------------------------------------------------------------------------


def weight_difference(reference: Path, resumed: Path) -> tuple[float, bool]:
    """Largest absolute difference over every tensor of every safetensors file, and whether all
    are bit-identical."""
    files = sorted(p.relative_to(reference) for p in reference.rglob("*.safetensors"))
    if not files or files != sorted(p.relative_to(resumed) for p in resumed.rglob("*.safetensors")):
        raise RuntimeError(f"{resumed} does not hold the files of {reference}")
    largest, identical = 0.0, True
    for name in files:
        a, b = load_file(reference / name), load_file(resumed / name)
        if a.keys() != b.keys():
            raise RuntimeError(f"{resumed / name}: other tensors than {reference / name}")
        for key in a:
            identical &= bool(np.array_equal(a[key], b[key]))
            diff = np.abs(a[key].astype(np.float64) - b[key].astype(np.float64))
            largest = max(largest, float(diff.max()) if diff.size else 0.0)
    return largest, identical


def weights_verdict(largest: float, identical: bool) -> str:
    if identical:
        return "bit-identical"
    return f"within {TOLERANCE:g}" if largest <= TOLERANCE else "DIFFERS"


def task_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def task_key(line: dict) -> tuple[str, str, int]:
    return (line["doc_id"], line["type"], int(line["sample"]))


# --- trials ------------------------------------------------------------------------------------


@dataclass
class Trial:
    command: str
    variant: str
    target: str
    phase: str = ""
    killed_at_s: float = 0.0
    step_at_kill: int | None = None
    resumed_from: str = ""
    outcome: str = ""
    ok: bool = False
    max_abs_diff: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Reference:
    seconds: float
    folder: Path
    steps: int = 0
    lines: int = 0
    bytes: int = 0
    metrics: dict | None = None
    timeline: dict[str, float] = field(default_factory=dict)  # phase -> first seen (s)


def kill_when(child: Child, due) -> str | None:
    """Poll ``due(child)`` until it returns a phase name (then SIGKILL) or the process ends."""
    while child.running():
        child.read()
        phase = due(child)
        if phase is not None:
            return phase
        time.sleep(POLL_S)
    return None


def aim(trial: Trial, child: Child, due) -> bool:
    """Wait for ``due`` and record the phase and time in ``trial``: True where the kill is due
    now, False (the process finished, the trial marked so) where the run ended first."""
    trial.phase = kill_when(child, due) or ""
    trial.killed_at_s = round(child.elapsed, 2)
    if trial.phase:
        return True
    child.finish()
    trial.outcome = "ended before the kill"
    return False


def attempt(failed: Trial, trial, *args) -> Trial:
    """``trial(*args)``; an exception is the outcome of ``failed`` (the other trials still run)."""
    try:
        return trial(*args)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        failed.outcome = f"error: {type(exc).__name__}: {exc}"[:200]
        return failed
