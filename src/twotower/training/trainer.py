"""Training on sentence-transformers' trainer: checkpoints, resume, bf16 and torchrun come with it."""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from twotower.data.files import write_manifest
from twotower.errors import ConfigError, InputError
from twotower.losses.cached import CachedSentenceTransformerLoss
from twotower.losses.frozen_documents import DOCUMENT_ROWS, FrozenDocumentsLoss, label_rows
from twotower.losses.spec import LossSpec
from twotower.losses.st_loss import SentenceTransformerLoss
from twotower.models.adapter import ResidualAdapter, adapters
from twotower.models.build import build_model
from twotower.models.embedding_cache import encode_corpus
from twotower.models.encoder import Encoder, bf16_supported, route_modules
from twotower.training.checkpoints import checkpoint_to_resume
from twotower.training.collate import IDS_COLUMN, ROW_COLUMN, RowsCollator, rows_dataset
from twotower.training.distributed import wait_for_every_rank
from twotower.training.examples import is_query_column
from twotower.training.nonfinite import NonFiniteLossGuard
from twotower.training.recipe import Recipe
from twotower.training.recipe_sections import ModelConfig, OptimConfig, TrainDataConfig
from twotower.training.refresh import Refresher
from twotower.training.refresh_callback import RefreshCallback
from twotower.training.rows import TrainingRows
from twotower.training.wise_ft import base_weights, interpolate

log = logging.getLogger(__name__)

FINISHED = "TRAINING_DONE"


@dataclass
class TrainOutcome:
    model_dir: Path
    steps: int
    seconds: float
    examples: int
    resumed_from: str | None


def _loss_log_callback(path: Path):
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        """Appends each trainer log line to ``train_log.jsonl`` at once, so a killed run keeps it."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero:
                with path.open("a") as handle:
                    handle.write(
                        json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n"
                    )

    return LossLog()


# A training row by number (``mined``: as first mined, see TrainingRows.drawn).
RowReader = Callable[..., dict[str, Any]]


def _wire_frozen_documents(
    losses: list[LossSpec], with_teacher: bool, model, rows: TrainingRows, collection
):
    """Freeze the document route, encode the corpus once; rows carry corpus rows as labels."""
    import torch

    if collection is None:
        raise ConfigError(
            "model.train_document_tower: false needs train.data (a collection whose corpus is indexed)"
        )
    query_params = {id(p) for m in route_modules(model, "query") for p in m.parameters()}
    document_route = route_modules(model, "document")
    for module in document_route:
        if isinstance(module, ResidualAdapter):
            continue  # trains on the index rows it maps
        for parameter in module.parameters():
            if id(parameter) not in query_params:
                parameter.requires_grad_(False)
    heads = adapters(document_route)
    encoder = Encoder(model, batch_size=64, name="document tower")
    documents, cached = encode_corpus(encoder, collection.corpus, adapted=False)
    log.info(
        "frozen document index: %d documents (%s)",
        len(documents),
        "cached" if cached else "encoded",
    )
    row_of = collection.corpus.index  # a collection's examples have their positive in it
    k = rows.num_negatives
    width = max(len(collection.positives(e.query_id)) for e in rows.examples)

    def read(index: int, *, mined: bool = False) -> dict:
        drawn = rows.drawn(index, mined=mined)
        e = drawn.example
        known = sorted(row_of[d] for d in collection.positives(e.query_id) if d in row_of)
        negatives = [row_of[d] for d in drawn.negative_keys]
        label = label_rows(row_of[e.positive_id], negatives, known, k, width)
        if not with_teacher:
            return {"anchor": e.query, "label": label}
        scores = rows.teacher_row(drawn)  # NaN marks a padded slot: no candidate there
        scores += [float("nan")] * (1 + k - len(scores))
        return {"anchor": e.query, "label": scores, IDS_COLUMN: {DOCUMENT_ROWS: label}}

    loss = FrozenDocumentsLoss(
        model,
        torch.from_numpy(documents),
        losses,
        num_negatives=k,
        num_positive_ids=width,
        teacher_scores=with_teacher,
        document_adapter=heads[0].adapt if heads else None,
    )
    return read, ["anchor"], loss


def _wire_both_towers(
    losses: list[LossSpec],
    mini_batch_size: int | None,
    with_teacher: bool,
    model,
    rows: TrainingRows,
):
    """Rows of texts drawn when read; the loss sees their ids and teacher scores."""

    k, m = rows.num_negatives, rows.num_negative_queries
    loss: SentenceTransformerLoss
    if mini_batch_size:
        loss = CachedSentenceTransformerLoss(
            model,
            losses,
            mini_batch_size=mini_batch_size,
            num_hard_negative_columns=k,
            num_negative_query_columns=m,
        )
    else:
        loss = SentenceTransformerLoss(
            model, losses, num_hard_negative_columns=k, num_negative_query_columns=m
        )
    return partial(rows.read, with_teacher=with_teacher), rows.columns(), loss


def _build_model(model: ModelConfig, train: TrainDataConfig, device: str | None):
    return build_model(
        model.name,
        towers=model.towers,
        pooling=model.pooling,
        max_length=train.max_document_length or model.max_document_length,
        query_prompt=model.query_prompt,
        document_prompt=model.document_prompt,
        device=device,
        document_adapter=model.document_adapter,
    )


def _set_max_length(model, length: int) -> None:
    """Set every transformer module's token limit (both routes of separate towers)."""
    from sentence_transformers.sentence_transformer.modules import Transformer

    for module in model.modules():
        if isinstance(module, Transformer):
            module.max_seq_length = length


def use_bf16(precision: str, device_type: str) -> bool:
    import torch

    if precision == "bf16":
        return True
    return precision == "auto" and bf16_supported(torch.device(device_type))


def _adapter_learning_rates(model, rate: float) -> dict[str, float]:
    """sentence-transformers' learning_rate_mapping: the adapters' weights at their own rate."""
    import re

    names = {
        f"{name}.{parameter}"
        for name, module in model.named_modules()
        if isinstance(module, ResidualAdapter)
        for parameter, _ in module.named_parameters()
    }
    if not names:
        return {}
    return {"(?:" + "|".join(re.escape(n) for n in sorted(names)) + ")$": rate}


def _training_arguments(
    optim: OptimConfig, towers: str, checkpoints: Path, device_type: str, rows: int, columns, model
):
    from sentence_transformers import SentenceTransformerTrainingArguments

    router_mapping = None
    if towers == "separate":
        router_mapping = {c: ("query" if is_query_column(c) else "document") for c in columns}
    return SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=optim.epochs,
        max_steps=optim.max_steps or -1,
        per_device_train_batch_size=optim.batch_size,
        gradient_accumulation_steps=optim.gradient_accumulation_steps,
        learning_rate=optim.learning_rate,
        warmup_steps=optim.warmup_ratio,  # transformers 5: a float below 1 is a ratio
        weight_decay=optim.weight_decay,
        seed=optim.seed,
        bf16=use_bf16(optim.precision, device_type),
        use_cpu=device_type == "cpu",
        save_strategy="steps",
        save_steps=optim.save_steps,
        save_total_limit=optim.save_total_limit,
        logging_steps=optim.logging_steps,
        report_to="none",
        batch_sampler="no_duplicates",
        router_mapping=router_mapping,
        learning_rate_mapping=_adapter_learning_rates(model, optim.adapter_learning_rate),
        dataloader_drop_last=rows >= 2 * optim.batch_size,
        # Rows are drawn in the main process, from tables a refresher may replace.
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def _trainer_class(read: RowReader, loaded, sampled):
    """The trainer, drawing each batch (``read``) when the step that trains on it begins: its
    data loader reads a batch ahead (accelerate), which would leave the batch after an adopted
    round on the old negatives, so the loader walks ``loaded`` (numbered rows, collected as
    numbers). The duplicate-free batch sampler reads ``sampled``, the rows as first mined: its
    batches do not depend on when a round came in."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.data_collator import (
        SentenceTransformerDataCollator,
    )

    class Collator(RowsCollator, SentenceTransformerDataCollator):
        pass

    class Trainer(SentenceTransformerTrainer):
        data_collator_class = Collator

        def get_train_dataloader(self):
            shown, self.train_dataset = self.train_dataset, loaded
            try:
                return super().get_train_dataloader()
            finally:
                self.train_dataset = shown

        def get_batch_sampler(self, dataset, *args, **kwargs):
            return super().get_batch_sampler(sampled, *args, **kwargs)

        def training_step(self, model, inputs, num_items_in_batch=None):
            batch = self.data_collator([read(i) for i in inputs.pop(ROW_COLUMN)])
            return super().training_step(model, batch, num_items_in_batch)

    return Trainer


def train_model(
    recipe: Recipe,
    rows: TrainingRows,
    run_dir: Path,
    *,
    resume: bool | None = None,
    device: str | None = None,
    collection=None,
) -> TrainOutcome:
    """Fine-tune the recipe's model on ``rows``; the result is saved to ``run_dir/model``.

    ``resume``: see :func:`checkpoint_to_resume` (checkpoints in ``run_dir/checkpoints``).
    """
    import torch

    checkpoints = run_dir / "checkpoints"
    resume_from = checkpoint_to_resume(checkpoints, resume)
    torch.manual_seed(recipe.optim.seed)
    model = _build_model(recipe.model, recipe.train, device)
    device_type = (
        device.split(":")[0] if device else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    with_teacher = recipe.teacher.kind != "none"
    if recipe.model.train_document_tower:
        read, columns, loss = _wire_both_towers(
            recipe.loss, recipe.optim.mini_batch_size, with_teacher, model, rows
        )
    else:
        read, columns, loss = _wire_frozen_documents(
            recipe.loss, with_teacher, model, rows, collection
        )
    # The rows as first mined, as the model card shows them (see _trainer_class).
    dataset = rows_dataset(partial(read, mined=True), len(rows))
    if len(dataset) == 0:
        raise ConfigError("no training example has the requested number of negatives")
    base = base_weights(model) if recipe.optim.wise_ft is not None else None
    args = _training_arguments(
        recipe.optim, recipe.model.towers, checkpoints, device_type, len(dataset), columns, model
    )
    callbacks = [
        _loss_log_callback(run_dir / "train_log.jsonl"),
        NonFiniteLossGuard(loss, skip_limit=recipe.optim.skip_nonfinite_batches),
    ]
    refresher = None
    if recipe.refresh.mode != "off":
        frozen = None if recipe.model.train_document_tower else loss.documents.cpu().numpy()
        refresher = Refresher(
            recipe.refresh,
            recipe.negatives,
            recipe.train,
            run_dir,
            rows,
            collection,
            frozen_documents=frozen,
            resuming=resume_from is not None,
            checkpoint=resume_from,
        )
        callbacks.append(RefreshCallback(refresher))
    loaded = rows_dataset(partial(read, mined=True), len(rows), numbered=True)
    trainer = _trainer_class(read, loaded, dataset)(
        model=model, args=args, train_dataset=dataset, loss=loss, callbacks=callbacks
    )
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except pickle.UnpicklingError:
        if resume_from is None:
            raise
        # The trainer loads a checkpoint's optimizer, scheduler and RNG states weights-only.
        raise InputError(
            "a file of this checkpoint holds more than tensors; a weights-only load refused it and"
            " ran none of it: remove the checkpoint or train with --restart",
            path=resume_from,
        ) from None
    finally:  # no round process outlives training, whatever ended it
        if refresher is not None:
            refresher.stop()
    seconds = time.perf_counter() - started
    if trainer.state.global_step == 0:  # the trainer only warns, and the model would be the base
        raise ConfigError(
            f"no training step ran: no batch of {recipe.optim.batch_size} rows without a repeated"
            f" text could be formed from {len(dataset)} examples; lower optim.batch_size"
        )
    if trainer.state.global_step < trainer.state.max_steps:  # again the trainer only warns
        log.warning(
            "training ended at step %d of %d: the batch sampler ran out of batches of %d rows"
            " without a repeated text (queries, positives and negatives repeat across %d"
            " examples); the model is saved, lower optim.batch_size for the full schedule",
            trainer.state.global_step,
            trainer.state.max_steps,
            recipe.optim.batch_size,
            len(dataset),
        )
    if base is not None:
        assert recipe.optim.wise_ft is not None  # base weights are kept for it
        interpolate(model, base, recipe.optim.wise_ft)
    if recipe.train.max_document_length:  # training-only truncation: save the evaluation length
        _set_max_length(model, recipe.model.max_document_length)
    model_dir = run_dir / "model"
    done = {"steps": trainer.state.global_step, "seconds": seconds, "examples": len(dataset)}
    if trainer.is_world_process_zero():  # one model, written once
        model.save(str(model_dir))
        saved = [p for p in sorted(model_dir.rglob("*")) if p.is_file()]
        write_manifest(model_dir / FINISHED, done, saved)  # checked before reuse
    wait_for_every_rank()  # the other ranks load the saved model next (evaluation)
    return TrainOutcome(model_dir, trainer.state.global_step, seconds, len(dataset), resume_from)
