"""One speed measurement per process: ``python benchmarks/speed_cases.py CASE CONFIG_JSON``.

Run by ``benchmarks/run_all.py``, which gives every case a fresh process so that "cold" is
cold (no in-memory state) and the peak resident memory (``ru_maxrss``) is that case's own.
Model loading is outside every timed region (both sides load the same model the same way)
but inside the peak memory. The case prints one line ``RESULT {json}`` last.

Cases (``st_*``: what a sentence-transformers user runs; ``tt_*``: twotower):

    st_train / tt_train       N steps, in-batch contrastive loss, same pairs, batch, max length
    st_encode                 SentenceTransformer.encode_document of the corpus
    st_mine / tt_mine         hard negatives for the training queries (cold or warm)
    st_eval / tt_eval         a full test-split evaluation (cold, or with the embedding cache)

sentence-transformers runs in its default fp32 and in the bf16 configurations its user has at
hand: ``st_train_bf16`` (``SentenceTransformerTrainingArguments(bf16=True)``), ``*_autocast``
(the call inside ``torch.autocast(device, dtype=torch.bfloat16)``) and ``st_encode_bf16`` (the
weights cast with ``model.to(torch.bfloat16)``).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

MODEL = "all-MiniLM-L6-v2"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_st(max_length: int):
    from twotower.models.encoder import load_sentence_transformer

    model = load_sentence_transformer(MODEL, device="cpu")
    model.max_seq_length = max_length
    return model


def st_autocast(model, enabled: bool):
    """What an ST user wraps a call in for bf16 compute: ``torch.autocast`` on its device."""
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(model.device.type, dtype=torch.bfloat16)


def st_embeddings_file(out: Path, mode: str) -> Path:
    """Where ``st_encode`` in ``mode`` (fp32, autocast, bf16) leaves the corpus embeddings."""
    return out / (
        "st_corpus_embeddings.npy" if mode == "fp32" else f"st_corpus_embeddings_{mode}.npy"
    )


def encoder(model, cfg: dict, precision: str):
    from twotower.models.encoder import Encoder

    return Encoder(
        model,
        batch_size=cfg["tt_batch_size"],
        max_length=cfg["max_length"],
        precision=precision,
        show_progress=False,
        name=MODEL,
        max_batch_tokens=cfg.get("max_batch_tokens"),
    )


# --- training ---------------------------------------------------------------------------------


def _step_timer():
    """A trainer callback recording the wall time of every optimiser step (data + forward +
    backward + update): the gaps between consecutive ``on_step_end`` calls."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())

        def steps(self) -> list[float]:
            return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]

    return StepTimer()


def _install_timer(timer) -> None:
    """Add ``timer`` to every SentenceTransformerTrainer built in this process (ours is one too)."""
    from sentence_transformers import SentenceTransformerTrainer

    original = SentenceTransformerTrainer.__init__

    def init(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=[*(callbacks or []), timer], **kwargs)

    SentenceTransformerTrainer.__init__ = init


def _train_pairs(cfg: dict):
    from twotower.data import load_collection
    from twotower.training.examples import examples_from_collection

    return examples_from_collection(load_collection(cfg.get("train_data", cfg["data"]), "train"))


def _training_rows(examples):
    """``train_model``'s input: the (query, positive) pairs as rows, no hard negatives (as ST's)."""
    from twotower.training.rows import TrainingRows

    return TrainingRows(examples, None, negatives=0)


def _train_summary(timer, batch_size: int, started: float) -> dict:
    steps = timer.steps()
    measured = steps[1:] or steps  # the first step pays one-off set-up (allocator, kernels)
    per_step = statistics.median(measured)
    return {
        "s_per_step": per_step,
        "pairs_per_s": batch_size / per_step,
        "first_step_s": steps[0],
        "step_times": steps,
        "train_wall_s": time.perf_counter() - started,
    }


def st_train(cfg: dict, out: Path, bf16: bool = False) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    examples = _train_pairs(cfg)
    timer = _step_timer()
    torch.manual_seed(42)
    model = load_st(cfg["max_length"])
    dataset = Dataset.from_dict(
        {"anchor": [e.query for e in examples], "positive": [e.positive for e in examples]}
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / ("st_train_bf16" if bf16 else "st_train")),
        max_steps=cfg["train_steps"],
        per_device_train_batch_size=cfg["batch_size"],
        learning_rate=2e-5,
        warmup_steps=0.1,
        seed=42,
        use_cpu=True,
        bf16=bf16,
        save_strategy="no",
        logging_steps=5,
        report_to="none",
        batch_sampler="no_duplicates",
        dataloader_drop_last=True,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[timer],
    )
    started = time.perf_counter()
    trainer.train()
    result = _train_summary(timer, cfg["batch_size"], started)
    result["bf16"] = bf16
    return result


def tt_train(cfg: dict, out: Path, precision: str) -> dict:
    from twotower.training.recipe import Recipe
    from twotower.training.recipe_sections import ModelConfig, OptimConfig
    from twotower.training.trainer import train_model, use_bf16

    examples = _train_pairs(cfg)
    timer = _step_timer()
    _install_timer(timer)
    recipe = Recipe(
        name="bench",
        model=ModelConfig(name=MODEL, max_document_length=cfg["max_length"]),
        loss=[{"loss": "contrastive", "preset": "mnrl"}],
        optim=OptimConfig(
            batch_size=cfg["batch_size"],
            max_steps=cfg["train_steps"],
            learning_rate=2e-5,
            warmup_ratio=0.1,
            precision=precision,
            save_steps=10**6,
            logging_steps=5,
        ),
    )
    started = time.perf_counter()
    rows = _training_rows(examples)
    train_model(recipe, rows, out / f"tt_train_{precision}", resume=False, device="cpu")
    result = _train_summary(timer, cfg["batch_size"], started)
    result["bf16"] = use_bf16(precision, "cpu")
    return result


# --- encoding ---------------------------------------------------------------------------------


def st_encode(cfg: dict, out: Path, mode: str = "fp32") -> dict:
    """ST's corpus encoding in ``mode``: ``fp32`` (its default), ``autocast`` (inside
    ``torch.autocast(..., dtype=torch.bfloat16)``) or ``bf16`` (``model.to(torch.bfloat16)``).
    The embeddings are kept for ``st_eval`` with a cache; against the fp32 ones where those are
    there (``st_encode`` ran first), the cosine of each document's two embeddings is reported."""
    import numpy as np
    import torch

    from twotower.data import load_collection

    corpus = load_collection(cfg["data"], "test").corpus
    model = load_st(cfg["max_length"])
    if mode == "bf16":
        model.to(torch.bfloat16)
    with st_autocast(model, mode == "autocast"):
        model.encode_document(
            corpus.texts[:8], batch_size=cfg["st_batch_size"]
        )  # warm-up, as tt gets none: tiny
        started = time.perf_counter()
        embeddings = model.encode_document(
            corpus.texts,
            batch_size=cfg["st_batch_size"],
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        seconds = time.perf_counter() - started
    embeddings = np.asarray(embeddings, dtype=np.float32)
    np.save(st_embeddings_file(out, mode), embeddings)
    result = {"seconds": seconds, "docs": len(corpus), "mode": mode}
    reference = st_embeddings_file(out, "fp32")
    if mode != "fp32" and reference.exists():
        fp32 = np.load(reference)
        if fp32.shape == embeddings.shape:
            cosine = (fp32 * embeddings).sum(axis=1) / (
                np.linalg.norm(fp32, axis=1) * np.linalg.norm(embeddings, axis=1)
            )
            result.update(
                cosine_to_fp32_mean=float(cosine.mean()), cosine_to_fp32_min=float(cosine.min())
            )
    return result


# --- mining -----------------------------------------------------------------------------------


def st_mine(cfg: dict, out: Path, autocast: bool = False) -> dict:
    """``mine_hard_negatives`` with a ``cache_folder``: the cold case fills it, the warm one reads
    it. Its cache is keyed by the model's name and the texts, not by precision, so the autocast
    cases get a folder of their own."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from twotower.data import load_collection
    from twotower.training.examples import examples_from_collection

    collection = load_collection(cfg["data"], "train")
    examples = examples_from_collection(collection)
    model = load_st(cfg["max_length"])
    dataset = Dataset.from_dict(
        {"anchor": [e.query for e in examples], "positive": [e.positive for e in examples]}
    )
    started = time.perf_counter()
    with st_autocast(model, autocast):
        mined = mine_hard_negatives(
            dataset,
            model,
            corpus=list(collection.corpus.texts),
            range_min=cfg["window"][0] - 1,
            range_max=cfg["window"][1],
            num_negatives=cfg["negatives"],
            sampling_strategy="random",
            batch_size=cfg["st_batch_size"],
            output_format="n-tuple",
            cache_folder=str(out / ("st_mining_cache_autocast" if autocast else "st_mining_cache")),
            verbose=False,
        )
    return {"seconds": time.perf_counter() - started, "rows": len(mined), "autocast": autocast}


def tt_mine(cfg: dict, out: Path, precision: str, table_cache: bool) -> dict:
    from twotower.data import load_collection
    from twotower.negatives import RankWindow, build_retriever, mine_negatives

    collection = load_collection(cfg["data"], "train")
    model = load_st(cfg["max_length"])
    retriever = build_retriever("dense", encoder(model, cfg, precision))
    started = time.perf_counter()
    table, stats = mine_negatives(
        collection,
        retriever,
        window=RankWindow(*cfg["window"]),
        count=cfg["negatives"],
        seed=0,
        use_cache=table_cache,
    )
    return {
        "seconds": time.perf_counter() - started,
        "negatives": stats.negatives,
        "table_cached": stats.cached,
    }


# --- evaluation -------------------------------------------------------------------------------


def st_eval(cfg: dict, out: Path, cached: bool, autocast: bool = False) -> dict:
    """ST's ``InformationRetrievalEvaluator``, called inside ``torch.autocast`` with ``autocast``
    (the whole call, as a user wraps it: the scoring runs in bf16 too)."""
    import numpy as np
    import torch
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from twotower.data import load_collection

    collection = load_collection(cfg["data"], "test")
    corpus = collection.corpus
    model = load_st(cfg["max_length"])
    qids = collection.judged_query_ids
    relevant = {q: {d for d, g in collection.qrels[q].items() if g > 0} for q in qids}
    started = time.perf_counter()
    evaluator = InformationRetrievalEvaluator(
        {q: collection.queries[q] for q in qids},
        dict(zip(corpus.ids, corpus.texts, strict=True)),
        relevant,
        batch_size=cfg["st_batch_size"],
        write_csv=False,
        name="bench",
    )
    kwargs = {}
    if cached:  # what an ST user can do: encode the corpus once, save it, pass it back in
        embeddings = st_embeddings_file(out, "autocast" if autocast else "fp32")
        kwargs["corpus_embeddings"] = torch.from_numpy(np.load(embeddings))
    with st_autocast(model, autocast):
        metrics = evaluator(model, **kwargs)
    seconds = time.perf_counter() - started
    ndcg = next(v for k, v in metrics.items() if k.endswith("ndcg@10"))
    return {"seconds": seconds, "ndcg@10": ndcg, "autocast": autocast}


def tt_eval(cfg: dict, out: Path, precision: str) -> dict:
    from twotower.data import load_collection
    from twotower.evaluation.evaluate import evaluate_systems

    collection = load_collection(cfg["data"], "test")
    model = load_st(cfg["max_length"])
    enc = encoder(model, cfg, precision)
    started = time.perf_counter()
    result = evaluate_systems(collection, encoders=[enc])[0]
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "ndcg@10": result.metrics["ndcg@10"],
        "timings": result.timings,
        "docs": len(collection.corpus),
        "bf16": enc.use_bf16(),
    }


CASES = {
    "st_train": st_train,
    "st_train_bf16": lambda c, o: st_train(c, o, bf16=True),
    "tt_train_fp32": lambda c, o: tt_train(c, o, "fp32"),
    "tt_train_auto": lambda c, o: tt_train(c, o, "auto"),
    "st_encode": st_encode,
    "st_encode_autocast": lambda c, o: st_encode(c, o, "autocast"),
    "st_encode_bf16": lambda c, o: st_encode(c, o, "bf16"),
    "st_mine_cold": st_mine,
    "st_mine_warm": st_mine,
    "st_mine_cold_autocast": lambda c, o: st_mine(c, o, autocast=True),
    "st_mine_warm_autocast": lambda c, o: st_mine(c, o, autocast=True),
    "tt_mine_cold": lambda c, o: tt_mine(c, o, "auto", table_cache=True),
    "tt_mine_warm": lambda c, o: tt_mine(c, o, "auto", table_cache=False),
    "tt_mine_warm_table": lambda c, o: tt_mine(c, o, "auto", table_cache=True),
    "st_eval_cold": lambda c, o: st_eval(c, o, cached=False),
    "st_eval_cached": lambda c, o: st_eval(c, o, cached=True),
    "st_eval_cold_autocast": lambda c, o: st_eval(c, o, cached=False, autocast=True),
    "st_eval_cached_autocast": lambda c, o: st_eval(c, o, cached=True, autocast=True),
    "tt_eval_cold_fp32": lambda c, o: tt_eval(c, o, "fp32"),
    "tt_eval_cached_fp32": lambda c, o: tt_eval(c, o, "fp32"),
    "tt_eval_cold_auto": lambda c, o: tt_eval(c, o, "auto"),
    "tt_eval_cached_auto": lambda c, o: tt_eval(c, o, "auto"),
}


def main() -> None:
    name, cfg = sys.argv[1], json.loads(sys.argv[2])
    out = Path(cfg["workdir"])
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(cfg["threads"])
    result = CASES[name](cfg, out)
    import torch

    result.update(case=name, peak_rss_mib=peak_mib(), threads=torch.get_num_threads())
    sys.stdout.flush()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
