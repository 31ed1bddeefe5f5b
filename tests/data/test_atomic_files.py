"""Every kind of file twotower reuses: written atomically, checked before use, and a damaged one
(a flipped byte, a truncated copy) reported in one line and rebuilt, never used; a full disk
leaves the previous file as it was and says so."""

from __future__ import annotations

import errno
import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from twotower.data import load_collection
from twotower.data.files import atomic_write, checksum_path, checksum_problem
from twotower.data.jsonl import write_jsonl
from twotower.errors import DiskFullError
from twotower.negatives.table import NegativesTable
from twotower.teachers.cache import ScoreCache, pair_key


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


class FullDisk:
    """A file handle that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data):
        if len(data) > self.room:
            self.handle.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.fixture
def full_disk(monkeypatch):
    """Every file atomic_write opens takes 10 bytes, then the disk is full."""
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real(fd, *a, **k), 10))


# --- the one writer ----------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "file.txt"
    with atomic_write(target) as handle:
        handle.write("première\n")
    with atomic_write(tmp_path / "out" / "array.npy", "wb", checksum=True) as handle:
        np.save(handle, np.arange(4.0))
    assert target.read_text() == "première\n"
    assert checksum_problem(tmp_path / "out" / "array.npy") is None
    assert leftovers(tmp_path / "out") == []


def test_an_exception_while_writing_leaves_the_previous_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("previous\n")
    with pytest.raises(RuntimeError, match="stopped"), atomic_write(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("stopped")
    assert target.read_text() == "previous\n" and leftovers(tmp_path) == []


def test_two_writers_of_one_file_never_share_a_temporary(tmp_path):
    target = tmp_path / "file.txt"
    with atomic_write(target) as first, atomic_write(target) as second:
        first.write("first\n")
        second.write("second\n")
        assert len(list(tmp_path.glob(".file.txt.*.tmp"))) == 2
    assert target.read_text() == "first\n"  # the outer block ends last, so its bytes win


def test_a_full_disk_leaves_the_previous_file_and_says_disk_full(tmp_path, full_disk):
    target = tmp_path / "rows.jsonl"
    target.write_text('{"old": 1}\n')
    with pytest.raises(DiskFullError) as caught:
        write_jsonl(target, [{"text": "x" * 100}])
    message = str(caught.value)
    assert message.startswith(f"{target}: disk full") and "left as it was" in message
    assert "\n" not in message
    assert target.read_text() == '{"old": 1}\n' and leftovers(tmp_path) == []


def test_a_full_disk_while_saving_embeddings_keeps_the_previous_entry(tmp_path, monkeypatch):
    from twotower.models.embedding_cache import _load_verified, _save

    entry = tmp_path / "entry.npy"
    _save(entry, np.ones((3, 4), dtype=np.float32))
    before = entry.read_bytes(), checksum_path(entry).read_bytes()
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real(fd, *a, **k), 10))
    with pytest.raises(DiskFullError, match=r"entry.npy: disk full"):
        _save(entry, np.zeros((3, 4), dtype=np.float32))
    monkeypatch.undo()
    assert (entry.read_bytes(), checksum_path(entry).read_bytes()) == before
    np.testing.assert_array_equal(_load_verified(entry), np.ones((3, 4)))
    assert leftovers(tmp_path) == []


def test_a_full_disk_during_the_rename_step_raises_disk_full_too(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("previous\n")

    def no_room(fd):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "fsync", no_room)
    with pytest.raises(DiskFullError, match=r"report.md: disk full"):
        with atomic_write(target) as handle:
            handle.write("new\n")
    monkeypatch.undo()
    assert target.read_text() == "previous\n" and leftovers(tmp_path) == []


def test_a_full_disk_while_scoring_keeps_the_stored_scores(tmp_path, monkeypatch):
    cache = ScoreCache("t", tmp_path)
    stored = [(pair_key("q", f"d{i}"), float(i)) for i in range(10)]
    cache.put_many(stored)
    connect = ScoreCache._connect

    def small_disk(self):
        connection = connect(self)
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk is full"
        return connection

    monkeypatch.setattr(ScoreCache, "_connect", small_disk)
    more = [(pair_key(f"query {i}", "doc" * 50), 0.5) for i in range(2000)]
    with pytest.raises(DiskFullError, match=r"t.sqlite: disk full"):
        cache.put_many(more)
    monkeypatch.undo()
    assert cache.get_many([k for k, _ in stored]) == dict(stored) and len(cache) == 10


def test_a_full_disk_while_generating_keeps_the_lines_written(tmp_path, monkeypatch, caplog):
    from tests.generation.test_job import CORPUS, IDS, Scripted, lines
    from twotower.generation import generate_queries

    out = tmp_path / "gen.jsonl"
    real_open = Path.open

    def opened(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return FullDisk(handle, 1500) if self == out and mode == "a" else handle

    monkeypatch.setattr(Path, "open", opened)
    with pytest.raises(DiskFullError, match=r"gen.jsonl: disk full"):
        generate_queries(CORPUS, IDS, ["questions"], 2, Scripted(), out, progress=False)
    monkeypatch.undo()
    assert not out.read_text().endswith("\n")  # a line cut by the full disk
    second = Scripted()
    with caplog.at_level("WARNING"):
        report = generate_queries(CORPUS, IDS, ["questions"], 2, second, out, progress=False)
    assert "cutting off a truncated last line" in caplog.text
    assert report.skipped_done + report.written == 12 and len(second.seen) == report.written
    assert sorted((w["doc_id"], w["sample"]) for w in lines(out)) == sorted(
        (d, i) for d in IDS for i in range(2)
    )


# --- damaged files of each kind ---------------------------------------------------------------


def flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def scored(tmp_path):
    """A score cache of 500 pairs, and those pairs."""
    cache = ScoreCache("teacher", tmp_path)
    pairs = [(pair_key(f"query {i}", f"document {i}"), 0.25 + i) for i in range(500)]
    cache.put_many(pairs)
    return cache, pairs


def test_a_flipped_byte_in_a_teacher_score_is_caught_and_scored_again(scored, caplog):
    cache, pairs = scored
    damaged_key, damaged_score = pairs[123]
    at = cache.path.read_bytes().find(struct.pack(">d", damaged_score))  # SQLite's REAL
    flip_byte(cache.path, at + 6)
    with caplog.at_level("WARNING"):
        found = cache.get_many([k for k, _ in pairs])
    assert damaged_key not in found and len(found) == 499  # never a wrong score
    assert "1 cached scores do not match their checksum" in caplog.text
    cache.put_many([(damaged_key, damaged_score)])  # what the teacher does with a missing pair
    assert cache.get_many([damaged_key]) == {damaged_key: damaged_score}


@pytest.mark.parametrize("damage", ["truncate", "overwrite the header"])
def test_a_teacher_score_file_sqlite_cannot_read_is_reported_and_rebuilt(scored, damage, caplog):
    cache, pairs = scored
    if damage == "truncate":
        truncate(cache.path)
    else:
        data = bytearray(cache.path.read_bytes())
        data[:16] = b"not a database!!"
        cache.path.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        assert cache.get_many([k for k, _ in pairs]) == {}
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{cache.path} is damaged (") and "computed again" in warning
    cache.put_many(pairs[:3])
    assert cache.get_many([k for k, _ in pairs]) == dict(pairs[:3])


def test_a_teacher_reads_no_damaged_score(tmp_path, monkeypatch):
    from tests.negatives._fakes import TableTeacher

    monkeypatch.setenv("TWOTOWER_CACHE", str(tmp_path))
    teacher = TableTeacher({f"document {i}": i + 0.5 for i in range(50)})
    queries, docs = ["a query"] * 50, [f"document {i}" for i in range(50)]
    first = teacher.score_pairs(queries, docs)
    at = teacher.cache.path.read_bytes().find(struct.pack(">d", 17.5))  # SQLite's REAL
    flip_byte(teacher.cache.path, at + 1)
    again = teacher.score_pairs(queries, docs)
    assert teacher.last_stats.computed == 1 and teacher.last_stats.cached == 49
    np.testing.assert_array_equal(again, first)


def test_a_cache_of_the_version_without_row_checksums_is_reused_with_a_warning(tmp_path, caplog):
    import sqlite3

    path = tmp_path / "teacher.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE scores (key BLOB PRIMARY KEY, score REAL NOT NULL)")
        connection.execute("INSERT INTO scores VALUES (?, ?)", (pair_key("q", "d"), 0.5))
    cache = ScoreCache("teacher", tmp_path)
    assert cache.get_many([pair_key("q", "d")]) == {pair_key("q", "d"): 0.5} and len(cache) == 1
    assert "1 teacher scores written by a version without row checksums are reused" in caplog.text
    with sqlite3.connect(path) as connection:  # checksummed from now on, the old table gone
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    assert "scores" not in tables


WINDOW_BOUNDS = (1, 6)


@pytest.fixture
def mined(tiny_collection):
    from tests.negatives._fakes import FixedRetriever
    from twotower.negatives import RankWindow, mine_negatives

    collection = load_collection(tiny_collection)
    ranking = {q: [f"d{j}" for j in (2, 5, 1, 3, 4, 6)] for q in collection.queries}
    retriever = FixedRetriever(ranking)
    table, _ = mine_negatives(
        collection, retriever, window=RankWindow(*WINDOW_BOUNDS), count=2, seed=1
    )
    assert table.total() == 6
    return collection, retriever, table


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "damage the statistics"])
def test_a_damaged_mined_table_is_reported_and_mined_again(mined, damage, caplog):
    from twotower.negatives import RankWindow, mine_negatives
    from twotower.negatives.cache import negatives_cache_dir

    collection, retriever, table = mined
    (entry,) = negatives_cache_dir().glob("*.jsonl")
    if damage == "flip a byte":
        negative = table.negatives["q1"][0].encode()
        flip_byte(entry, entry.read_bytes().index(b'"' + negative + b'"') + 2)  # valid, wrong id
    elif damage == "truncate":
        truncate(entry)
    else:
        truncate(entry.with_suffix(".json"))
    with caplog.at_level("WARNING"):
        again, stats = mine_negatives(
            collection, retriever, window=RankWindow(*WINDOW_BOUNDS), count=2, seed=1
        )
    assert not stats.cached and retriever.calls == 2 and again.negatives == table.negatives
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "mining again" in warning and str(negatives_cache_dir()) in warning
    _, stats = mine_negatives(
        collection, retriever, window=RankWindow(*WINDOW_BOUNDS), count=2, seed=1
    )
    assert stats.cached


def publish(tmp_path: Path, generation: int) -> Path:
    from twotower.training.refresh_round import RoundRequest, RoundStats, publish_round

    table = NegativesTable(
        {"q1": ["d2", "d5"], "q2": ["d1"]}, {"q1": [1, 2], "q2": [3]}, {"q1": ["d1"], "q2": ["d3"]}
    )
    request = RoundRequest(
        generation=generation,
        step=10 * generation,
        snapshot="-",
        train={"data": "-"},
        rounds_dir=str(tmp_path / "rounds"),
        query_ids=["q1", "q2"],
        negatives=2,
        negative_queries=0,
        window=(1, 5),
        negative_query_window=(1, 3),
        depth=8,
        seed=0,
    )
    stats = RoundStats(generation=generation, step=10 * generation, started=time.time())
    return publish_round(request, {"documents": table, "queries": None}, stats)


@pytest.mark.parametrize(
    "damage", ["flip a byte", "truncate", "change the manifest", "drop the manifest's checksum"]
)
def test_a_damaged_refresh_round_is_set_aside_never_read(tmp_path, tiny_collection, damage, caplog):
    from twotower.training.refresh_round import complete_rounds, read_round

    collection = load_collection(tiny_collection)
    publish(tmp_path, 1)
    folder = publish(tmp_path, 2)
    manifest = json.loads((folder / "manifest.json").read_text())
    if damage == "flip a byte":
        flip_byte(
            folder / "negatives.jsonl", (folder / "negatives.jsonl").read_bytes().index(b"d5")
        )
    elif damage == "truncate":
        truncate(folder / "negatives.jsonl")
    elif damage == "change the manifest":
        (folder / "manifest.json").write_text(json.dumps({**manifest, "step": 99}) + "\n")
    else:
        checksum_path(folder / "manifest.json").unlink()
    with caplog.at_level("WARNING"):
        assert read_round(folder, collection) is None
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{folder}: damaged refresh round (") and "set aside" in warning
    assert [p.name for p in complete_rounds(tmp_path / "rounds")] == ["round-00001"]
    assert (tmp_path / "rounds" / "round-00002.damaged").is_dir()  # kept for a look, not read
    manifest, documents, _ = read_round(tmp_path / "rounds" / "round-00001", collection)
    assert manifest["step"] == 10 and documents.negatives == {"q1": ["d2", "d5"], "q2": ["d1"]}


def test_a_damaged_kept_synthetic_file_is_reported_and_made_again(
    tmp_path, tiny_collection, caplog
):
    from tests.training.test_synthetic_step import synthetic_recipe
    from twotower.training.recipe import load_recipe
    from twotower.training.synthetic_step import ensure_synthetic_queries

    def _ensure(recipe):
        return ensure_synthetic_queries(recipe.synthetic, recipe.train)

    synthetic = {"generator": "ict", "per_doc": 1, "filter": {"retrievers": ["bm25"], "top_k": 3}}
    path, kept = synthetic_recipe(tmp_path, tiny_collection, synthetic=synthetic)
    _ensure(load_recipe(path))
    made = kept.read_bytes()
    flip_byte(kept, made.index(b'"query": "') + 12)
    with caplog.at_level("WARNING"):
        info = _ensure(load_recipe(path))
    assert "reused" not in info and "does not match its checksum" in caplog.text
    assert kept.read_bytes() == made  # made again from the generated file, never used damaged
    assert _ensure(load_recipe(path)) == {"reused": str(kept)}


def test_the_command_line_says_disk_full_in_one_line(tmp_path, full_disk, capsys):
    import typer

    from twotower.cli.common import user_errors, write_json

    report = tmp_path / "report.json"
    report.write_text('{"previous": true}\n')

    @user_errors
    def command():
        write_json(report, {"metrics": list(range(100))})

    with pytest.raises(typer.Exit) as stopped:
        command()
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.exit_code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {report}: disk full")
    assert report.read_text() == '{"previous": true}\n'


def test_a_refresh_log_line_cut_by_a_kill_is_left_out_of_the_report(tmp_path, caplog):
    from twotower.training.report import read_refresh_log

    log = tmp_path / "refresh_log.jsonl"
    log.write_text('{"generation": 1, "step": 2}\n{"generation": 2, "st\n{"generation": 3}\n')
    with caplog.at_level("WARNING"):
        adopted, failed = read_refresh_log(log)
    assert [r["generation"] for r in adopted] == [1, 3] and failed == []
    assert f"{log}:2: a line cut short" in caplog.text


def test_a_read_only_cache_is_still_read(tiny_model, tiny_collection, monkeypatch):
    from twotower.models import Encoder
    from twotower.models.embedding_cache import encode_corpus

    corpus = load_collection(tiny_collection).corpus
    encoder = Encoder.from_name(str(tiny_model), device="cpu", show_progress=False)
    first, _ = encode_corpus(encoder, corpus)
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    again, cached = encode_corpus(encoder, corpus)
    assert cached and np.array_equal(again, first)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "no marker"])
def test_a_damaged_trained_model_is_trained_again_not_reused(
    tmp_path, tiny_collection, damage, caplog
):
    from twotower.data.files import write_manifest
    from twotower.training.pipeline import finished_model, write_recipe
    from twotower.training.recipe import load_recipe
    from twotower.training.trainer import FINISHED

    path = tmp_path / "r.yaml"
    path.write_text(f"train: {{data: {tiny_collection}}}\n")
    recipe, run_dir = load_recipe(path), tmp_path / "run"
    write_recipe(recipe, run_dir)
    model = run_dir / "model"
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (model / "config.json").write_text('{"hidden": 32}\n')
    saved = [p for p in sorted(model.rglob("*")) if p.is_file()]
    write_manifest(model / FINISHED, {"steps": 4}, saved)  # as the trainer writes it
    assert finished_model(run_dir, recipe) == model
    if damage == "flip a byte":
        flip_byte(model / "weights" / "model.safetensors", 100)
    elif damage == "truncate":
        truncate(model / "config.json")
    else:
        (model / FINISHED).unlink()
    with caplog.at_level("WARNING"):
        assert finished_model(run_dir, recipe) is None
    if damage != "no marker":
        assert f"{model}: " in caplog.text and "does not match its checksum" in caplog.text


def test_a_manifest_checks_itself_every_file_it_lists_and_with_complete_no_other(tmp_path):
    from twotower.data.files import read_manifest, write_manifest

    (tmp_path / "sub").mkdir()
    listed = [tmp_path / "a.bin", tmp_path / "sub" / "b.txt"]
    listed[0].write_bytes(b"\x00\x01")
    listed[1].write_text("b\n")
    manifest = tmp_path / "MANIFEST"
    write_manifest(manifest, {"steps": 3}, listed)
    assert read_manifest(manifest, complete=True) == ({"steps": 3}, None)
    (tmp_path / "stray").write_text("x")
    assert read_manifest(manifest) == ({"steps": 3}, None)
    assert read_manifest(manifest, complete=True) == ({"steps": 3}, "stray is not in MANIFEST")
    (tmp_path / "stray").unlink()
    listed[1].write_text("c\n")
    assert read_manifest(manifest)[1] == "sub/b.txt does not match its checksum"
    manifest.write_text(manifest.read_text().replace('"steps": 3', '"steps": 4'))
    assert read_manifest(manifest) == ({"steps": 4}, "MANIFEST does not match its checksum")
    assert read_manifest(tmp_path / "none") == (None, "none is missing")
    # Rewritten over a folder that holds it: the old manifest and its checksum are not listed.
    write_manifest(manifest, {"steps": 5}, [*listed, manifest, tmp_path / "MANIFEST.sha256"])
    assert read_manifest(manifest, complete=True) == ({"steps": 5}, None)
