"""ANCE/DANCE refresh beside the trainer: negatives re-mined from the weights being trained.

ANCE (Xiong et al. 2021) refreshes its hard negatives from the model as it learns, so the
negatives stay hard; DANCE (Li et al. 2021) refreshes its negative queries the same way. Here a
:class:`Refresher` runs rounds beside sentence-transformers' trainer:

* when a round is due it saves a snapshot of the weights and starts
  :mod:`twotower.training.refresh_round` in a process of its own (``async``: training goes on;
  ``sync``: training waits for the round, the baseline for the overhead);
* before every step (and, ``sync``, right after the round) it adopts the newest published
  round: :meth:`TrainingRows.publish` hands the new negatives to the rows, and the next step's
  batch is drawn from them (the trainer draws each batch when its step begins, not when its
  data loader reads ahead);
* a round that fails or is killed leaves training on the last good negatives (the log says
  so); a half-written round is never read (rounds are renamed into place, manifest last);
* no round process outlives the trainer: it is stopped at the end of training or on an
  exception, and a round notices when its parent dies (SIGKILL) and exits;
* ``--resume`` continues where the checkpoint left refresh: its rounds are published again in
  the order they were adopted (the rows draw the same negatives, same generation), the cadence
  is restored, and rounds started after the checkpoint are set aside, so a resumed ``sync`` run
  repeats the uninterrupted one exactly, a checkpoint mid-epoch included (``async`` adopts a
  round when it happens to finish, so its runs differ anyway); an older checkpoint without that
  state takes the newest round.

Under torchrun, rank 0 runs the rounds and chooses which to adopt; before every step it tells
the other ranks, and every rank publishes the same round into its rows at the same step (the
run folder must be on a file system every rank sees, as the caches must).

Every adopted round is a line of ``refresh_log.jsonl`` in the run folder (timings, the step of
its weights, ``adopted_at_step``: the steps trained when it was adopted, ``first_step``: the
first step whose batch was drawn from it, numbered as ``train_log.jsonl`` numbers steps, queries
covered, overlap with the previous round, the positives' mean and median rank in the round's
search, one beyond ``refresh.depth`` counting as depth + 1); failures are lines too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from twotower.data.collection import Collection
from twotower.data.files import atomic_write
from twotower.models.sharded_encoding import transport_device
from twotower.settings import is_main_process, world_size
from twotower.training.recipe_sections import NegativesConfig, RefreshConfig, TrainDataConfig
from twotower.training.refresh_round import (
    ROUND_PREFIX,
    RoundRequest,
    complete_rounds,
    read_round,
    round_dir,
)
from twotower.training.refresh_state import checkpoint_state, forget_rounds_after
from twotower.training.rows import TrainingRows, documents_to_mine, queries_to_mine

log = logging.getLogger(__name__)


class Refresher:
    """Rounds of refresh for one training run (see the module docstring)."""

    def __init__(
        self,
        config: RefreshConfig,
        negatives: NegativesConfig,
        train: TrainDataConfig,
        run_dir: Path,
        rows: TrainingRows,
        collection: Collection,
        *,
        frozen_documents: np.ndarray | None = None,
        resuming: bool = False,
        checkpoint: str | None = None,
    ) -> None:
        self.config = config
        self.negatives = negatives
        self.train = train
        self.rows = rows
        self.collection = collection
        self.dir = run_dir / "refresh"
        self.log_path = run_dir / "refresh_log.jsonl"
        # Rank 0 runs the rounds and writes the folder; other ranks only read the rounds it chose.
        self.main = is_main_process()
        self.shared = world_size() > 1 and dist.is_initialized()
        if self.main and not resuming:  # a fresh start never adopts an earlier run's rounds
            shutil.rmtree(self.dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)
        if self.main:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.running: RoundRequest | None = None
        self.adopted = 0  # generation in use (0: the negatives mined before training)
        self.agreed = 0  # under torchrun: the generation rank 0 last told every rank
        self.adopted_rounds: list[int] = []  # every generation published into the rows, in order
        self.launched = 0  # the last generation started (a failed one is not reused)
        self.last_launch_step: int | None = None
        self.frozen_documents_path: str | None = None
        if frozen_documents is not None and self.main:
            path = self.dir / "frozen_documents.npy"
            with atomic_write(path, "wb") as handle:
                np.save(handle, np.asarray(frozen_documents, dtype=np.float32))
            self.frozen_documents_path = str(path)
            log.info("refresh: frozen document tower, each round re-encodes only the queries")
        if self.main:
            for stale in self.dir.glob(".round-*.tmp-*"):  # a round killed while it was writing
                shutil.rmtree(stale, ignore_errors=True)
        if self.shared:
            dist.barrier()  # the folder is clean before any rank reads a round from it
        queries = list(dict.fromkeys(e.query_id for e in rows.examples if e.query_id))
        chunks = max(1, math.ceil(1 / self.config.fraction))
        self.chunks = [queries[i::chunks] for i in range(chunks)]
        saved = checkpoint_state(checkpoint) if checkpoint else None
        if saved is not None:
            self.restore(saved)

    # --- rounds -------------------------------------------------------------------------------

    @property
    def next_generation(self) -> int:
        published = complete_rounds(self.dir)
        newest = int(published[-1].name.split("-")[-1]) if published else 0
        return max(newest, self.adopted, self.launched) + 1

    def due(self, step: int) -> bool:
        if self.running is not None:
            return False
        every = self.config.every_steps
        # async without a cadence: a new round as soon as the last one is done
        return every is None or step - (self.last_launch_step or 0) >= every

    def launch(self, model: Any, step: int) -> RoundRequest | None:
        """Snapshot the weights and start a round on them in a process of its own (rank 0; the
        other ranks only keep the cadence, so a sync round is due on every rank alike)."""
        if not self.main:
            self.last_launch_step = step
            return None
        generation = self.next_generation
        snapshot = self.dir / f"snapshot-{generation:05d}"
        shutil.rmtree(snapshot, ignore_errors=True)
        model.save(str(snapshot))
        published = complete_rounds(self.dir)
        config, negatives = self.config, self.negatives
        k, m = self.rows.num_negatives, self.rows.num_negative_queries
        request = RoundRequest(
            generation=generation,
            step=step,
            snapshot=str(snapshot),
            train=self.train.model_dump(mode="json"),
            rounds_dir=str(self.dir),
            query_ids=self.chunks[(generation - 1) % len(self.chunks)],
            negatives=config.negatives_per_query or documents_to_mine(k, frozen=self.rows.pool),
            negative_queries=config.negative_queries_per_document or queries_to_mine(m),
            window=config.rank_window or negatives.rank_window,
            negative_query_window=config.negative_query_window or negatives.negative_query_window,
            depth=config.depth,
            seed=negatives.seed + generation,
            precision=config.precision,
            max_length=config.max_length,
            threads=config.threads,
            device=config.device,
            frozen_documents=self.frozen_documents_path,
            previous=str(published[-1]) if published else None,
            index=config.index_settings(),
        )
        request_path = self.dir / f"request-{generation:05d}.json"
        with atomic_write(request_path) as handle:
            handle.write(json.dumps(asdict(request), indent=2) + "\n")
        output = (self.dir / f"round-{generation:05d}.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twotower.training.refresh_round",
                str(request_path),
                str(os.getpid()),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        output.close()
        self.running, self.last_launch_step, self.launched = request, step, generation
        log.info("refresh round %d started on the weights of step %d", generation, step)
        return request

    def collect(self, *, wait: bool = False) -> None:
        """Notice that the running round ended (waiting for it with ``wait``)."""
        if self.process is None or self.running is None:
            return
        code = self.process.wait() if wait else self.process.poll()
        if code is None:
            return
        request, self.process, self.running = self.running, None, None
        shutil.rmtree(request.snapshot, ignore_errors=True)
        if code != 0:
            log.warning(
                "refresh round %d failed (exit status %d, see %s); training keeps the"
                " negatives of round %d",
                request.generation,
                code,
                self.dir / f"round-{request.generation:05d}.log",
                self.adopted,
            )
            self._record({"generation": request.generation, "step": request.step, "failed": code})

    def adopt_newest(self, step: int) -> bool:
        """Publish the newest complete round into the rows, if it is newer than the one in use."""
        self.collect()
        published = complete_rounds(self.dir)
        if not published:
            return False
        newest = published[-1]
        generation = int(newest.name.split("-")[-1])
        if generation <= self.adopted:
            return False
        manifest = self._publish(newest, generation)
        if manifest is None:  # damaged, set aside: the next round replaces it
            return False
        stats = json.loads((newest / "stats.json").read_text())
        # Batches are drawn when their step begins: the next step is the first to train on it.
        self._record({**stats, "adopted_at_step": step, "first_step": step + 1})
        log.info(
            "refresh round %d (weights of step %d) in use from step %d: positives' mean rank %.1f",
            generation,
            manifest["step"],
            step + 1,
            stats["positive_rank_mean"],
        )
        return True

    def adopt(self, step: int) -> bool:
        """:meth:`adopt_newest`; under torchrun rank 0 chooses the round and every rank publishes
        that one before the step, and rank 0 checks that all of them did."""
        if not self.shared:
            return self.adopt_newest(step)
        if self.main:
            self.adopt_newest(step)
        choice = torch.tensor([self.adopted], dtype=torch.int64, device=transport_device())
        dist.broadcast(choice, src=0)  # one small collective before every step
        generation = int(choice.item())
        if generation == self.agreed:  # the same on every rank: nothing new this step
            return False
        self.agreed = generation
        if not self.main and generation != self.adopted:
            self._publish(round_dir(self.dir, generation), generation)
        in_use = [None] * world_size()
        dist.all_gather_object(in_use, self.adopted)
        if self.main and any(g != generation for g in in_use):
            log.warning(
                "refresh: round %d is not in use on every rank (rounds in use by rank: %s);"
                " those ranks keep their negatives",
                generation,
                in_use,
            )
        elif self.main and generation:
            log.info("refresh round %d in use on all %d ranks", generation, len(in_use))
        return True

    def _publish(self, folder: Path, generation: int) -> dict | None:
        """Hand the round's tables to the rows; its manifest, or None for a damaged round."""
        published_round = read_round(folder, self.collection)
        if published_round is None:
            return None
        manifest, documents, queries = published_round
        self.rows.publish(  # only what the rows draw
            documents=documents if self.rows.num_negatives else None,
            queries=queries if self.rows.num_negative_queries else None,
        )
        self.adopted = generation
        self.adopted_rounds.append(generation)
        return manifest

    def state(self) -> dict:
        """What a checkpoint keeps of refresh (in trainer_state.json, see :class:`RefreshCallback`)."""
        return {
            "adopted_rounds": list(self.adopted_rounds),
            "launched": self.launched,
            "last_launch_step": self.last_launch_step,
        }

    def restore(self, saved: dict) -> None:
        """Back to a checkpoint's refresh state (see the module docstring). A round started after
        the checkpoint is removed: its weights are from steps the resumed run trains again, and
        the round it launches instead takes the same generation (same seed, same queries)."""
        launched = int(saved["launched"])
        for folder in self.dir.glob(f"{ROUND_PREFIX}*") if self.main else ():
            number = folder.name[len(ROUND_PREFIX) :]
            if folder.is_dir() and number.isdigit() and int(number) > launched:
                log.info("refresh: %s was started after the checkpoint; computed again", folder)
                shutil.rmtree(folder)
        for generation in saved["adopted_rounds"]:
            folder = round_dir(self.dir, generation)
            if not folder.is_dir() or self._publish(folder, generation) is None:
                log.warning(
                    "refresh: round %d of the checkpoint is missing or damaged; the resumed run"
                    " draws other negatives than the interrupted one",
                    generation,
                )
        self.launched = launched
        self.last_launch_step = saved["last_launch_step"]
        if self.main:
            forget_rounds_after(self.log_path, launched, set(saved["adopted_rounds"]))

    def stop(self) -> None:
        """End a running round (training is over or failed); its half-written files are never
        read."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.running is not None:
            shutil.rmtree(self.running.snapshot, ignore_errors=True)
        self.process = self.running = None

    def _record(self, entry: dict) -> None:
        if not self.main:
            return
        with self.log_path.open("a") as handle:
            handle.write(json.dumps({"time": time.time(), **entry}) + "\n")
