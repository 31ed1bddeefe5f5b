"""Processes sharing one cache at once: each entry is built once (the others wait for it and read
it), a process killed while building leaves what it saved to the next, and every result is right.
Real processes (tests/data/_cache_worker.py) started together against an empty cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from twotower.data import load_collection
from twotower.data.files import checksum_problem
from twotower.models import Encoder
from twotower.models.embedding_cache import embedding_cache_dir, encode_corpus

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def start():
    """``start(mode, folder, name, **options)``: a worker process; any left is killed after."""
    started: list[subprocess.Popen] = []

    def launch(mode: str, folder: Path, name: str, **options) -> subprocess.Popen:
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "tests.data._cache_worker", mode, str(folder), name]
        started.append(subprocess.Popen([*command, json.dumps(options)], cwd=ROOT, env=env))
        return started[-1]

    yield launch
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for(path: Path, process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process is not None and process.poll() is not None:
            pytest.fail(f"worker exited with status {process.returncode} before {path.name}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def run_together(folder: Path, workers: dict[str, subprocess.Popen]) -> dict[str, dict]:
    """Start the loaded workers at the same moment; their results once all are done."""
    for name, process in workers.items():
        wait_for(folder / f"{name}.ready", process)
    (folder / "go").touch()
    for name, process in workers.items():
        assert process.wait(timeout=120) == 0, f"worker {name} failed"
    return {name: json.loads((folder / f"{name}.json").read_text()) for name in workers}


def entries() -> list[Path]:
    return sorted(embedding_cache_dir().glob("*.npy"))


def direct_encoding(model: Path, collection: Path) -> np.ndarray:
    encoder = Encoder.from_name(str(model), device="cpu", show_progress=False)
    return encode_corpus(encoder, load_collection(collection).corpus, use_cache=False)[0]


def test_two_evaluations_at_once_encode_the_corpus_once(
    start, tmp_path, tiny_model, tiny_collection
):
    options = {"model": str(tiny_model), "collection": str(tiny_collection), "delay": 1.0}
    workers = {n: start("encode", tmp_path, n, **options) for n in ("a", "b")}
    results = run_together(tmp_path, workers)
    assert sorted(r["cached"] for r in results.values()) == [False, True]  # one encoded it
    assert sum(len(r["calls"]) for r in results.values()) == 1
    expected = direct_encoding(tiny_model, tiny_collection)
    for name in workers:
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), expected, atol=1e-5)
    (entry,) = entries()
    assert checksum_problem(entry) is None


def test_a_process_killed_mid_encoding_leaves_its_chunks_to_the_one_waiting(
    start, tmp_path, tiny_model, tiny_collection
):
    """The lock holder owns the .parts folder: the waiting process never sees it removed under
    it, and when the holder dies, it resumes from the chunks the holder saved."""
    options = {
        "model": str(tiny_model),
        "collection": str(tiny_collection),
        "delay": 1.5,
        "chunk": 2,  # 6 documents: 3 chunks
    }
    workers = {n: start("encode", tmp_path, n, **options) for n in ("a", "b")}
    for name, process in workers.items():
        wait_for(tmp_path / f"{name}.ready", process)
    (tmp_path / "go").touch()
    deadline = time.monotonic() + 60
    while not any((tmp_path / f"{n}.encoding").exists() for n in workers):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    holder = "a" if (tmp_path / "a.encoding").exists() else "b"
    other = "b" if holder == "a" else "a"
    (parts,) = wait_for_parts()
    wait_for(parts / "0-2.npy", workers[holder])  # the first chunk is saved (checksum first)
    assert not (tmp_path / f"{other}.encoding").exists()  # the other waits, encoding nothing
    workers[holder].send_signal(signal.SIGKILL)
    workers[holder].wait(timeout=30)
    assert workers[other].wait(timeout=120) == 0
    result = json.loads((tmp_path / f"{other}.json").read_text())
    assert result == {"cached": False, "calls": [2, 2]}  # the two chunks the holder had not saved
    expected = direct_encoding(tiny_model, tiny_collection)
    np.testing.assert_allclose(np.load(tmp_path / f"{other}.npy"), expected, atol=1e-5)
    (entry,) = entries()
    assert checksum_problem(entry) is None and not parts.exists()


def wait_for_parts(timeout: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout
    while not (found := list(embedding_cache_dir().glob("*.parts"))):
        assert time.monotonic() < deadline, "no chunked encoding started"
        time.sleep(0.02)
    return found


def test_two_minings_at_once_agree_and_leave_one_valid_entry(
    start, tmp_path, tiny_model, tiny_collection
):
    from twotower.negatives import DenseRetriever, RankWindow, mine_negatives
    from twotower.negatives.cache import negatives_cache_dir

    options = {"model": str(tiny_model), "collection": str(tiny_collection), "delay": 1.0}
    workers = {n: start("mine", tmp_path, n, **options) for n in ("a", "b")}
    results = run_together(tmp_path, workers)
    assert results["a"]["negatives"] == results["b"]["negatives"]
    # Corpus and queries were encoded once between the two processes, not once each.
    assert sum(len(r["calls"]) for r in results.values()) == 2
    assert len(entries()) == 2 and all(checksum_problem(e) is None for e in entries())
    assert len(list(negatives_cache_dir().glob("*.jsonl"))) == 1
    encoder = Encoder.from_name(str(tiny_model), device="cpu", show_progress=False)
    table, stats = mine_negatives(
        load_collection(tiny_collection),
        DenseRetriever(encoder),
        window=RankWindow(1, 6),
        count=2,
        seed=0,
    )
    assert stats.cached and table.negatives == results["a"]["negatives"]


def test_two_teachers_scoring_into_one_sqlite_file_at_once(start, tmp_path):
    import hashlib

    from tests.negatives._fakes import TableTeacher

    workers = {
        "a": start("score", tmp_path, "a", pairs=[0, 1500], delay=0.02),
        "b": start("score", tmp_path, "b", pairs=[500, 2000], delay=0.02),
    }
    results = run_together(tmp_path, workers)
    for result, (first, last) in zip(results.values(), ([0, 1500], [500, 2000]), strict=True):
        expected = np.arange(first, last, dtype=np.float32) + 0.5
        assert result["sha256"] == hashlib.sha256(expected.tobytes()).hexdigest()
    assert sum(r["scored"] for r in results.values()) >= 2000  # shared pairs scored once or twice

    class Reader(TableTeacher):
        fingerprint = "slow"

    reader = Reader({f"document {i}": i + 0.5 for i in range(2000)})
    scores = reader.score_pairs(["a query"] * 2000, [f"document {i}" for i in range(2000)])
    assert reader.scored == 0 and len(reader.cache) == 2000  # every pair stored, all valid
    np.testing.assert_array_equal(scores, np.arange(2000, dtype=np.float32) + 0.5)
