"""ANCE/DANCE refresh beside the trainer, on a tiny model the tests build."""

import json
import signal
import subprocess
import time

import psutil
import pytest

from tests.conftest import train_process
from twotower.data.collection import load_collection
from twotower.errors import ConfigError
from twotower.retrieval.ann import IndexSettings
from twotower.training.examples import query_key
from twotower.training.pipeline import prepare_rows, write_recipe
from twotower.training.recipe import load_recipe
from twotower.training.refresh import Refresher
from twotower.training.refresh_round import (
    RoundRequest,
    complete_rounds,
    compute_round,
    positive_ranks,
    publish_round,
    read_round,
    round_dir,
)
from twotower.training.trainer import train_model


def refresh_recipe(tmp_path, model, collection, *, refresh, loss="preset: mnrl", optim=None):
    optim = {"batch_size": 2, "epochs": 1, "save_steps": 100, "precision": "fp32", **(optim or {})}
    path = tmp_path / "refresh.yaml"
    path.write_text(
        f"model: {{name: {model}}}\n"
        f"train: {{data: {collection}, split: train}}\n"
        "negatives: {source: dense, count: 1, rank_window: [1, 5], negative_queries: 0}\n"
        f"refresh: {json.dumps(refresh)}\n"
        f"loss:\n  - {{loss: contrastive, {loss}}}\n"
        f"optim: {json.dumps(optim)}\n"
        f"eval: {{collections: [{collection}], probe: false}}\n"
    )
    return path


def negatives_in_use(rows):
    """Each query's negatives as its first row draws them now."""
    seen = {}
    for index, example in enumerate(rows.examples):
        seen.setdefault(query_key(example), rows.drawn(index).negative_keys)
    return seen


def round_processes():
    me = psutil.Process()
    found = []
    for child in me.children(recursive=True):
        try:
            if "twotower.training.refresh_round" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _train(path, run_dir):
    recipe = load_recipe(path)
    write_recipe(recipe, run_dir)
    data = prepare_rows(recipe)
    outcome = train_model(recipe, data.rows, run_dir, collection=data.collection)
    return data, outcome


def test_negatives_in_use_come_from_the_newest_round_and_never_a_positive(
    tmp_path, tiny_model, train_collection
):
    refresh = {"mode": "sync", "every_steps": 1, "depth": 8}
    path = refresh_recipe(
        tmp_path, tiny_model, train_collection, refresh=refresh, optim={"epochs": 2}
    )
    data, outcome = _train(path, tmp_path / "run")
    rounds = complete_rounds(tmp_path / "run" / "refresh")
    assert outcome.steps == 4 and len(rounds) == 3  # after steps 1, 2 and 3; none after the last
    _, newest, _ = read_round(rounds[-1], data.collection)
    in_use = negatives_in_use(data.rows)
    assert data.rows.generation == 3
    for query_id, negatives in in_use.items():
        assert set(negatives) <= set(newest[query_id])
        assert not set(negatives) & data.collection.positives(query_id)
    log = [json.loads(line) for line in (tmp_path / "run" / "refresh_log.jsonl").open()]
    assert [entry["generation"] for entry in log] == [1, 2, 3]
    assert [entry["step"] for entry in log] == [1, 2, 3]
    assert all(entry["queries"] == 3 and entry["positive_rank_mean"] >= 1 for entry in log)
    assert log[1]["overlap_with_previous"] is not None
    assert not round_processes() and not list((tmp_path / "run" / "refresh").glob("snapshot-*"))


def _record_batches(monkeypatch) -> dict[int, dict]:
    """Step (numbered as train_log.jsonl numbers it) -> the ids of the batch its loss saw."""
    from sentence_transformers import SentenceTransformerTrainer

    batches: dict[int, dict] = {}
    compute_loss = SentenceTransformerTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        batches[self.state.global_step + 1] = {
            k: v.tolist() for k, v in inputs["label"].items() if k.endswith("_ids")
        }
        return compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "compute_loss", recording)
    return batches


def test_a_sync_runs_log_names_the_first_step_trained_on_each_round_whose_batch_it_drew(
    tmp_path, tiny_model, train_collection, monkeypatch
):
    batches = _record_batches(monkeypatch)
    refresh = {"mode": "sync", "every_steps": 1, "depth": 8}
    path = refresh_recipe(
        tmp_path, tiny_model, train_collection, refresh=refresh, optim={"epochs": 2}
    )
    data, outcome = _train(path, tmp_path / "run")
    log = [json.loads(line) for line in (tmp_path / "run" / "refresh_log.jsonl").open()]
    # Rounds after steps 1, 2 and 3: two of them in the middle of an epoch (two batches each).
    assert [entry["first_step"] for entry in log] == [2, 3, 4] and outcome.steps == 4
    rows = data.rows
    row_of = {}
    for index in range(len(rows)):
        ids = rows.ids(rows.drawn(index))
        row_of[ids["query_ids"], ids["positive_ids"]] = index
    # The rows as each round left them: the same draws, replayed outside the trainer.
    replay = prepare_rows(load_recipe(path)).rows
    differs = False
    for entry in log:
        before = {i: replay.drawn(i) for i in range(len(replay))}
        replay.publish(
            documents=read_round(
                round_dir(tmp_path / "run" / "refresh", entry["generation"]), data.collection
            )[1]
        )
        batch = batches[entry["first_step"]]
        for query, positive, negatives in zip(
            batch["query_ids"], batch["positive_ids"], batch["hard_negative_ids"], strict=True
        ):
            index = row_of[query, positive]
            assert negatives == rows.ids(replay.drawn(index))["hard_negative_ids"]
            differs |= negatives != rows.ids(before[index])["hard_negative_ids"]
    assert differs, "no round changed a drawn negative: the test could not tell the rounds apart"


def test_asynchronous_rounds_run_beside_training_and_leave_no_process(
    tmp_path, tiny_model, train_collection
):
    refresh = {"mode": "async", "depth": 8, "threads": 1}
    path = refresh_recipe(
        tmp_path, tiny_model, train_collection, refresh=refresh, optim={"epochs": 200}
    )
    data, outcome = _train(path, tmp_path / "run")
    # Refreshed negatives on six documents can leave the no-duplicates sampler short of
    # batches before step 400 (the trainer then stops early, with a warning): not refresh's
    # concern here, so at least most of the schedule must have run.
    assert 200 <= outcome.steps <= 400
    log = [json.loads(line) for line in (tmp_path / "run" / "refresh_log.jsonl").open()]
    assert data.rows.generation >= 1 and log  # rounds landed while the steps ran
    # Training went on while each round ran: a round is adopted steps after its weights' step.
    assert all(entry["adopted_at_step"] > entry["step"] for entry in log)
    assert not round_processes()


def test_a_failing_round_does_not_stop_training(
    tmp_path, tiny_model, train_collection, monkeypatch
):
    launch = Refresher.launch

    def broken_launch(self, model, step):
        # the round process cannot start its work: its collection is not there
        self.train.data = str(tmp_path / "missing")
        return launch(self, model, step)

    monkeypatch.setattr(Refresher, "launch", broken_launch)
    refresh = {"mode": "sync", "every_steps": 1, "depth": 8}
    path = refresh_recipe(tmp_path, tiny_model, train_collection, refresh=refresh)
    data, outcome = _train(path, tmp_path / "run")
    assert outcome.steps == 2 and data.rows.generation == 0  # still the mined negatives
    log = [json.loads(line) for line in (tmp_path / "run" / "refresh_log.jsonl").open()]
    assert log and all(entry["failed"] != 0 for entry in log)


def test_an_exception_in_the_trainer_leaves_no_round_behind(
    tmp_path, tiny_model, train_collection, monkeypatch
):
    from twotower.training.refresh_callback import RefreshCallback

    on_step_end = RefreshCallback.on_step_end

    def failing(self, args, state, control, **kwargs):
        on_step_end(self, args, state, control, **kwargs)
        if self.refresher.running is not None:
            assert round_processes()  # a round is running right now
            raise RuntimeError("the trainer fails while a round runs")

    monkeypatch.setattr(RefreshCallback, "on_step_end", failing)
    path = refresh_recipe(
        tmp_path, tiny_model, train_collection, refresh={"mode": "async", "depth": 8}
    )
    with pytest.raises(RuntimeError, match="while a round runs"):
        _train(path, tmp_path / "run")
    assert not round_processes()


def _running(process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_round_leaves_when_the_trainer_is_killed(tmp_path, tiny_model, train_collection):
    refresh = {"mode": "async", "depth": 8}
    path = refresh_recipe(
        tmp_path, tiny_model, train_collection, refresh=refresh, optim={"epochs": 400}
    )
    out = tmp_path / "killed"
    trainer = train_process(path, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    rounds: list = []

    def is_round(process: psutil.Process) -> bool:
        try:
            return "twotower.training.refresh_round" in " ".join(process.cmdline())
        except (psutil.ZombieProcess, psutil.NoSuchProcess):  # a round that just finished
            return False

    while not rounds and time.time() < deadline and trainer.poll() is None:
        rounds = [p for p in psutil.Process(trainer.pid).children() if is_round(p)]
        time.sleep(0.05)
    assert rounds, "no round started"
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()
    gone, alive = psutil.wait_procs(rounds, timeout=10)
    # A zombie has exited; only its parent (the test's reaper) has not collected it yet.
    alive = [p for p in alive if _running(p)]
    assert not alive, "a round outlived its trainer"


def _request(tmp_path, collection_dir, model, generation, **extra):
    collection = load_collection(str(collection_dir), "train")
    request = RoundRequest(
        generation=generation,
        step=generation * 10,
        snapshot=str(model),
        train={"data": str(collection_dir), "split": "train"},
        rounds_dir=str(tmp_path / "rounds"),
        query_ids=["q1", "q2", "q3"],
        negatives=2,
        negative_queries=1,
        window=(1, 5),
        negative_query_window=(1, 3),
        depth=8,
        seed=0,
        **extra,
    )
    return request, collection


def test_a_round_samples_from_its_windows_never_a_positive(tmp_path, tiny_model, train_collection):
    request, collection = _request(tmp_path, train_collection, tiny_model, 1)
    tables, stats = compute_round(request, collection)
    documents, queries = tables["documents"], tables["queries"]
    for qid in request.query_ids:
        assert len(documents[qid]) == 2 and not set(documents[qid]) & collection.positives(qid)
        assert all(1 <= rank <= 5 for rank in documents.ranks[qid])
    for doc_id, negatives in queries.negatives.items():
        assert all(doc_id not in collection.positives(q) for q in negatives)
    assert stats.queries == 3 and stats.documents_encoded == len(collection.corpus.ids)
    assert 1 <= stats.positive_rank_median <= len(collection.corpus.ids)


def test_a_round_can_search_through_an_hnsw_index(tmp_path, tiny_model, train_collection):
    pytest.importorskip("faiss")
    request, collection = _request(
        tmp_path, train_collection, tiny_model, 1, index=IndexSettings("hnsw")
    )
    tables, stats = compute_round(request, collection)
    for qid in request.query_ids:
        negatives = tables["documents"][qid]
        assert len(negatives) == 2 and not set(negatives) & collection.positives(qid)
    assert any("hnsw index" in note for note in stats.notes)


def test_an_approximate_index_without_faiss_is_refused_naming_the_key(tmp_path, monkeypatch):
    from twotower.training import recipe_sections as recipe_module

    monkeypatch.setattr(recipe_module, "faiss_available", lambda: False)
    path = tmp_path / "r.yaml"
    path.write_text("negatives: {source: bm25, count: 1}\nrefresh: {mode: async, index: ivf}\n")
    with pytest.raises(ConfigError, match=r"refresh.index: .*pip install faiss-cpu"):
        load_recipe(path)


def test_positive_ranks_are_places_in_the_searched_ranking_or_beyond_its_depth():
    run = {"q1": {"d3": 0.9, "d1": 0.5, "d2": 0.1}, "q2": {"d2": 0.7}}
    ranks = positive_ranks(run, {"q1": ["d1", "d5"], "q2": ["d2"], "q3": ["d4"]}, depth=3)
    assert ranks == [2, 4, 1, 4]  # d5 and q3's d4 were not found in the top 3


def test_a_rounds_positive_ranks_come_from_its_search_not_the_whole_corpus(
    tmp_path, tiny_model, train_collection, monkeypatch
):
    from twotower.training import refresh_round

    searched, search_run = {}, refresh_round.search_run

    def missing_a_positive(*args, **kwargs):
        run = search_run(*args, **kwargs)
        run["q1"].pop("d1", None)  # as an approximate index can miss a document
        searched.update(run)
        return run

    monkeypatch.setattr(refresh_round, "search_run", missing_a_positive)
    request, collection = _request(tmp_path, train_collection, tiny_model, 1)
    request.depth, request.window, request.negative_queries = 4, (1, 4), 0
    _, stats = compute_round(request, collection)
    expected = [
        list(searched[q]).index(d) + 1 if d in searched[q] else 5
        for q in request.query_ids
        for d in sorted(collection.positives(q))
    ]
    assert stats.positives_beyond_depth == expected.count(5) >= 1
    assert stats.positive_rank_mean == pytest.approx(sum(expected) / len(expected))
    assert any("beyond the searched depth (4)" in note for note in stats.notes)


def test_a_killed_or_half_written_round_is_never_read_and_resume_takes_the_newest(
    tmp_path, tiny_model, train_collection
):
    rounds = tmp_path / "rounds"
    for generation in (1, 2):
        request, collection = _request(tmp_path, train_collection, tiny_model, generation)
        publish_round(request, *compute_round(request, collection))
    (rounds / ".round-00003.tmp-123").mkdir()  # killed while writing
    (rounds / "round-00004").mkdir()  # no manifest: never complete
    (rounds / "round-00004" / "negatives.jsonl").write_text("{not json\n")
    assert [p.name for p in complete_rounds(rounds)] == ["round-00001", "round-00002"]

    recipe = load_recipe(
        refresh_recipe(tmp_path, tiny_model, train_collection, refresh={"mode": "async"})
    )
    rows = prepare_rows(recipe).rows
    run_dir = tmp_path / "run"
    (run_dir / "refresh").parent.mkdir(parents=True, exist_ok=True)
    rounds.rename(run_dir / "refresh")
    refresher = Refresher(
        recipe.refresh, recipe.negatives, recipe.train, run_dir, rows, collection, resuming=True
    )
    assert not list((run_dir / "refresh").glob(".round-*"))  # the killed round's files are gone
    assert refresher.adopt_newest(step=20) and refresher.adopted == 2
    _, newest, _ = read_round(run_dir / "refresh" / "round-00002", collection)
    for query_id, negatives in negatives_in_use(rows).items():
        assert set(negatives) <= set(newest[query_id])
    assert refresher.next_generation == 3
    # A fresh start (no checkpoint to resume) never adopts an earlier run's rounds.
    fresh = Refresher(
        recipe.refresh,
        recipe.negatives,
        recipe.train,
        run_dir,
        prepare_rows(recipe).rows,
        collection,
    )
    assert not complete_rounds(run_dir / "refresh") and not fresh.adopt_newest(step=0)


@pytest.mark.parametrize(
    ("refresh", "extra", "message"),
    [
        ({"mode": "sync"}, "", r"refresh: mode sync needs every_steps"),
        ({"mode": "async", "depth": 50}, "", r"refresh.rank_window ends at rank 100"),
        ({"mode": "async", "device": "cuda:7"}, "", r"refresh.device: .*not available"),
        ({"mode": "async"}, "train: {pairs: p.jsonl, data: null}\n", r"set train.data"),
        (
            {"mode": "async"},
            "teacher: {kind: fusion, model: m}\n"
            "negatives: {source: bm25, count: 1, rank_window: [10, 100], false_negative_margin: 0.1}\n",
            r"false_negative_margin is not applied to refreshed negatives",
        ),
    ],
)
def test_a_refresh_that_cannot_work_is_refused_when_the_recipe_loads(
    tmp_path, refresh, extra, message
):
    import torch

    if "device" in refresh and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = tmp_path / "r.yaml"
    negatives = (
        ""
        if "negatives:" in extra
        else "negatives: {source: bm25, count: 1, rank_window: [10, 100]}\n"
    )
    path.write_text(negatives + f"refresh: {json.dumps(refresh)}\n" + extra)
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_a_bare_off_in_yaml_turns_refresh_off(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("refresh: {mode: off}\n")  # YAML reads `off` as false
    assert load_recipe(path).refresh.mode == "off"


def test_a_round_never_keeps_a_querys_own_document_where_queries_are_documents(
    tmp_path, tiny_model
):
    from tests.conftest import DOCS, write_collection
    from twotower.models.encoder import Encoder, load_sentence_transformer
    from twotower.negatives.mine import RankWindow, mine_negatives
    from twotower.negatives.retrievers import DenseRetriever

    # ArguAna's shape: each query is a document of the corpus, under the document's id.
    queries = [{"_id": d["_id"], "text": d["text"]} for d in DOCS[:3]]
    qrels = "query-id\tcorpus-id\tscore\r\nd1\td2\t1\r\nd2\td1\t1\r\nd3\td4\t1\r\n"
    root = write_collection(tmp_path / "shared", queries=queries, qrels=qrels, split="train")
    collection = load_collection(str(root), "train")
    assert collection.ids_are_shared()
    request, _ = _request(tmp_path, root, tiny_model, 1)
    request.query_ids, request.negatives, request.window = ["d1", "d2", "d3"], 6, (1, 6)
    request.negative_queries = 0
    tables, _ = compute_round(request, collection)
    documents = tables["documents"]
    for qid in request.query_ids:
        assert qid not in documents[qid]
    # The same rule as the first mining: on the same weights, the same table.
    encoder = Encoder(load_sentence_transformer(str(tiny_model)), show_progress=False)
    mined, _ = mine_negatives(
        collection, DenseRetriever(encoder), window=RankWindow(1, 6), count=6, seed=0
    )
    assert documents.negatives == mined.negatives and documents.ranks == mined.ranks


def test_the_checkpointed_state_is_read_under_the_callbacks_name():
    from twotower.training.refresh_callback import RefreshCallback
    from twotower.training.refresh_state import CALLBACK_NAME

    assert RefreshCallback.__name__ == CALLBACK_NAME  # the trainer stores its state by class name
