"""A non-finite loss (NaN or ±inf) never reaches the weights.

By default training stops at the first one with a :class:`~twotower.errors.TrainingFault`: one
line naming the optimizer step and the value of each loss term. It is raised while the loss is
computed, before the step is applied, so no checkpoint is written from the faulty state and the
checkpoints already written stay as they are (``--resume`` continues from the last).

With ``optim.skip_nonfinite_batches: N`` the first N optimizer steps whose loss is not finite
are skipped instead, each logged with its step: their gradients are dropped just before the
optimizer runs, and AdamW leaves a parameter without a gradient untouched (weights, moments and
step count), so the weights after a skipped step are those before it. The learning-rate
schedule still advances by one step. The next non-finite loss stops training as above. The
count starts afresh in each process (a resumed run may skip N more).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import TrainerCallback

from twotower.errors import TrainingFault
from twotower.losses.combined import CombinedLoss

log = logging.getLogger(__name__)


def describe_terms(loss: nn.Module) -> str:
    """``name=value`` of each term the loss computed last (weights when not 1), or ``""``."""
    combined = next((m for m in loss.modules() if isinstance(m, CombinedLoss)), None)
    if combined is None or not combined.last_terms:
        return ""
    weights = dict(zip(combined.term_names, combined.weights, strict=True))
    parts = []
    for name, value in combined.last_terms.items():
        weight = "" if weights[name] == 1 else f" at weight {weights[name]:g}"
        parts.append(f"{name}={value.item():.6g}{weight}")
    return ", ".join(parts)


def _all_ranks_finite(loss: Tensor) -> bool:
    """Whether the loss is finite on every rank: under torchrun all ranks stop or skip together."""
    finite = torch.isfinite(loss.detach()).all()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        flag = finite.to(torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())
    return bool(finite.item())


class NonFiniteLossGuard(TrainerCallback):
    """Watches every value ``loss`` returns (a forward hook) and stops or skips as above.

    Args:
        loss: the loss module the trainer calls (its :class:`CombinedLoss` names the terms).
        skip_limit: how many optimizer steps with a non-finite loss to skip; 0 stops at the first.
    """

    def __init__(self, loss: nn.Module, *, skip_limit: int = 0) -> None:
        self.skip_limit = skip_limit
        self.skipped_steps: list[int] = []
        self._step: int | None = None  # the optimizer step being computed (1-based)
        self._discard = False
        self._checkpoints: Path | None = None
        self._last_checkpoint: int | None = None
        loss.register_forward_hook(self._check)

    def on_train_begin(self, args, state, control, **kwargs):
        self._checkpoints = Path(args.output_dir)

    def on_step_begin(self, args, state, control, **kwargs):
        if self._step is None and state.global_step:  # resumed from this step's checkpoint
            self._last_checkpoint = state.global_step
        self._step = state.global_step + 1

    def on_save(self, args, state, control, **kwargs):
        self._last_checkpoint = state.global_step

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if not self._discard:
            return
        self._discard = False
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None  # skipped by the optimizer, moments and step count kept

    def _check(self, module: nn.Module, inputs, loss: Tensor) -> None:
        if self._step is None or _all_ranks_finite(loss):  # outside training, or finite
            return
        if self._discard:  # another micro-batch of a step already being skipped
            return
        terms = describe_terms(module)
        what = f"the loss is {loss.detach().float().item()}" + (f" ({terms})" if terms else "")
        if len(self.skipped_steps) < self.skip_limit:
            self.skipped_steps.append(self._step)
            self._discard = True
            log.warning(
                "step %d: %s; the step is skipped (%d of optim.skip_nonfinite_batches: %d)",
                self._step,
                what,
                len(self.skipped_steps),
                self.skip_limit,
            )
            return
        raise TrainingFault(f"training stopped at step {self._step}: {what}; {self._after()}")

    def _after(self) -> str:
        skipped = ""
        if self.skipped_steps:
            steps = ", ".join(map(str, self.skipped_steps))
            skipped = (
                f"steps {steps} were skipped (optim.skip_nonfinite_batches: {self.skip_limit}); "
            )
        if self._last_checkpoint is None:
            return skipped + "no checkpoint was written yet"
        return (
            skipped + f"the last checkpoint (step {self._last_checkpoint}) in {self._checkpoints}"
            " is kept; --resume continues from it"
        )
