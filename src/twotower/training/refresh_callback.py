"""The trainer's side of refresh rounds: a callback that drives a
:class:`~twotower.training.refresh.Refresher` from the steps and keeps its state in every
checkpoint."""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from twotower.training.refresh import Refresher


class RefreshCallback(TrainerCallback, ExportableState):
    """Drives a :class:`Refresher` from the trainer's steps; the trainer writes its
    :meth:`state` into every checkpoint's trainer_state.json (the file that marks a checkpoint
    complete), read back by :func:`~twotower.training.refresh_state.checkpoint_state`."""

    def __init__(self, refresher: Refresher) -> None:
        self.refresher = refresher

    def state(self) -> dict:
        return {"args": {}, "attributes": self.refresher.state()}

    def on_train_begin(self, args, state, control, **kwargs):
        self.refresher.adopt(state.global_step)  # resuming: the newest complete round

    def on_step_begin(self, args, state, control, **kwargs):
        self.refresher.adopt(state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        refresher = self.refresher
        if state.global_step >= state.max_steps or not refresher.due(state.global_step):
            return
        refresher.launch(model, state.global_step)
        if refresher.config.mode == "sync":
            refresher.collect(wait=True)
            refresher.adopt(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.refresher.stop()
