"""Choosing the main job's settings by cross-validation on SciFact's *train* queries.

The 809 judged train queries are split into k folds by a seeded permutation of their ids (no
query in two folds; the test split is never read). For each fold, all-MiniLM-L6-v2's query
tower trains on the other folds' (query, positive) pairs against the frozen MiniLM document
index and is evaluated on the held-out fold, so every train query is scored exactly once, by a
model that never saw it: the folds' per-query NDCG@10 put together give one score per query
and configuration, and two configurations are compared with the paired test over the 809
queries. WiSE-FT ratios are read off one training run (the weights interpolated after it).

Objective: InfoNCE with the student's softmax over the whole corpus (with a frozen index every
document is a candidate for the price of one matrix product; the main job's 200 mined negatives
per query shared across a batch of 32 cover most of SciFact's 5,183 documents), other
positives of the query masked, temperature 0.05; optionally mixed with listwise KL towards the
BM25 + all-mpnet-base-v2 fusion teacher (``--teacher-weight``, teacher temperature 0.1 over its
top 200) and a residual adapter on the frozen document embeddings (``--doc-adapter``).

    python benchmarks/main_job_cv.py                         # the main job's objective
    python benchmarks/main_job_cv.py --teacher-weight 0.5
    python benchmarks/main_job_cv.py --doc-adapter
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from adapt_selection import STUDENT, TEACHER, bm25_matrix, fused, optimiser

from twotower.data.collection import load_collection
from twotower.evaluation.metrics import evaluate_run
from twotower.evaluation.significance import paired_test
from twotower.models.embedding_cache import encode_corpus
from twotower.models.encoder import Encoder
from twotower.models.resolve import resolve_model
from twotower.retrieval.bm25 import BM25

WISE = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def fold_split(qids: list[str], k: int, seed: int = 0) -> list[list[str]]:
    """``k`` folds of ``qids`` by a seeded permutation: every query in exactly one fold, the
    folds' sizes within one of each other."""
    order = np.random.default_rng(seed).permutation(len(qids))
    folds = [sorted(qids[i] for i in order[f::k]) for f in range(k)]
    assert sum(map(len, folds)) == len(set().union(*map(set, folds))) == len(qids)
    return folds


def per_query_ndcg(scores: np.ndarray, qids: list[str], collection) -> dict[str, float]:
    top = np.argpartition(-scores, 100, axis=1)[:, :100]
    ids = collection.corpus.ids
    run = {q: {ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    _, per = evaluate_run(run, {q: collection.qrels[q] for q in qids}, ["ndcg@10"])
    return {q: v["ndcg@10"] for q, v in per.items()}


def train_fold(a, dev, qids, fold, positives, index, teacher_rows, f) -> dict[float, dict]:
    """Train on the folds other than ``fold``; the held-out per-query NDCG@10 per WiSE-FT ratio."""
    from sentence_transformers import SentenceTransformer

    dim = index.shape[1]
    held_out: dict[float, dict] = {w: {} for w in WISE}
    train_q = [q for q in qids if q not in set(fold)]
    pairs = [(q, p) for q in train_q for p in positives[q]]
    model = SentenceTransformer(resolve_model(STUDENT), device="cpu")
    model.max_seq_length = 64
    base = copy.deepcopy(model.state_dict())
    adapter = torch.nn.Sequential(
        torch.nn.Linear(dim, dim), torch.nn.GELU(), torch.nn.Linear(dim, dim)
    )
    torch.nn.init.zeros_(adapter[2].weight)
    torch.nn.init.zeros_(adapter[2].bias)
    scale = {"residual": 1.0}

    def documents() -> torch.Tensor:
        if not a.doc_adapter:
            return index
        return torch.nn.functional.normalize(index + scale["residual"] * adapter(index), dim=-1)

    def embed(texts: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(
            model(model.preprocess(texts))["sentence_embedding"], dim=-1
        )

    batch = 32
    per_epoch = len(pairs) // batch
    steps = per_epoch * a.epochs
    opt, sched = optimiser(a, model, adapter, steps)
    rng = np.random.default_rng(f)
    schedule = np.concatenate(
        [rng.permutation(len(pairs))[: per_epoch * batch] for _ in range(a.epochs)]
    )
    model.train()
    for step in range(steps):
        rows = [pairs[i] for i in schedule[step * batch : (step + 1) * batch]]
        q = embed([dev.queries[x] for x, _ in rows])
        logits = q @ documents().T / a.temperature
        mask = torch.zeros_like(logits, dtype=torch.bool)
        for i, (x, p) in enumerate(rows):
            mask[i, [r for r in positives[x] if r != p]] = True
        logits = logits.masked_fill(mask, -1e4)
        target = torch.tensor([p for _, p in rows])
        loss = torch.nn.functional.cross_entropy(logits, target)
        if teacher_rows is not None:
            cand = torch.from_numpy(np.stack([teacher_rows[x][0] for x, _ in rows]))
            t = torch.from_numpy(np.stack([teacher_rows[x][1] for x, _ in rows]))
            p_teacher = torch.softmax(t / a.teacher_temperature, -1)
            log_student = torch.log_softmax(
                torch.einsum("bd,bpd->bp", q, documents()[cand]) / a.temperature, -1
            )
            kl = -(p_teacher * log_student).sum(-1).mean()
            loss = (1 - a.teacher_weight) * loss + a.teacher_weight * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    trained = copy.deepcopy(model.state_dict())
    model.eval()
    for w in WISE:
        model.load_state_dict({k: w * trained[k] + (1 - w) * base[k] for k in trained})
        scale["residual"] = w
        with torch.no_grad():
            e = torch.cat(
                [
                    embed([dev.queries[q] for q in fold[i : i + 128]])
                    for i in range(0, len(fold), 128)
                ]
            )
            held_out[w].update(per_query_ndcg((e @ documents().T).numpy(), fold, dev))
    return held_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--teacher-weight", type=float, default=0.0)
    ap.add_argument("--teacher-temperature", type=float, default=0.1)
    ap.add_argument("--doc-adapter", action="store_true")
    ap.add_argument("--adapter-learning-rate", type=float, default=1e-3)
    ap.add_argument("--name", default=None, help="name of this configuration's per-query file")
    ap.add_argument("--against", default=None, help="a configuration's name to test against")
    ap.add_argument("--work", type=Path, default=Path("runs/main-job-cv"))
    a = ap.parse_args()
    torch.manual_seed(0)
    dev = load_collection("scifact", "train")
    corpus = dev.corpus
    student = Encoder.from_name(STUDENT, max_length=256, show_progress=False)
    index_np = encode_corpus(student, corpus)[0]
    qids = dev.judged_query_ids
    row_of = {d: i for i, d in enumerate(corpus.ids)}
    positives = {
        q: [row_of[d] for d, r in dev.qrels[q].items() if r > 0 and d in row_of] for q in qids
    }
    teacher_rows = None
    a.work.mkdir(parents=True, exist_ok=True)
    if a.teacher_weight > 0:
        cached = a.work / "teacher-train.npz"
        if not cached.is_file():
            mpnet = Encoder.from_name(TEACHER, max_length=256, show_progress=False)
            bm25 = BM25().index(corpus.ids, corpus.texts)
            texts = [dev.queries[q] for q in qids]
            np.savez(
                cached,
                B=bm25_matrix(bm25, texts),
                S=mpnet.encode_queries(texts) @ encode_corpus(mpnet, corpus)[0].T,
            )
        z = np.load(cached)
        teacher_all = fused(z["B"], z["S"], 0.5)
        top = np.argsort(-teacher_all, axis=1)[:, :200]
        teacher_rows = {
            q: (top[i], np.take_along_axis(teacher_all[i], top[i], 0)) for i, q in enumerate(qids)
        }

    folds = fold_split(qids, a.folds)
    index = torch.from_numpy(index_np)
    held_out: dict[float, dict] = {w: {} for w in WISE}
    started = time.time()
    for f, fold in enumerate(folds):
        for w, scores in train_fold(a, dev, qids, fold, positives, index, teacher_rows, f).items():
            held_out[w].update(scores)
        print(f"fold {f + 1}/{a.folds} done, {time.time() - started:.0f} s", flush=True)

    e = torch.from_numpy(student.encode_queries([dev.queries[q] for q in qids]))
    base_per = per_query_ndcg((e @ index.T).numpy(), qids, dev)
    name = a.name or "cv"
    out = {str(w): held_out[w] for w in WISE}
    (a.work / f"{name}.json").write_text(
        json.dumps({"args": vars(a) | {"work": str(a.work)}, "per_query": out})
    )
    other = None
    if a.against:
        other = json.loads((a.work / f"{a.against}.json").read_text())["per_query"]
    print(f"SciFact train, {a.folds}-fold CV, base {np.mean(list(base_per.values())):.4f}")
    for w in WISE:
        test = paired_test(held_out[w], base_per)
        line = f"  WiSE-FT {w:.1f}: {test.mean_a:.4f} ({test.difference:+.4f} vs base, p {test.randomisation_p_value:.4f})"
        if other is not None:
            vs = paired_test(held_out[w], other[str(w)])
            line += f"; vs {a.against} at {w:.1f}: {vs.difference:+.4f} (p {vs.randomisation_p_value:.4f})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
