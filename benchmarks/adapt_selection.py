"""How `twotower adapt`'s loss settings were chosen: on SciFact's *train* queries, never trained on.

Queries are two inverse-cloze sentences per passage of the SciFact corpus (10,356), each scored
over the whole corpus by the BM25 + all-mpnet-base-v2 fusion teacher (linear, alpha 0.5, min-max
over each system's top 100); all-MiniLM-L6-v2's query tower learns the teacher's distribution over
the teacher's top P candidates against the frozen MiniLM document index (1 epoch, batch 32,
lr 5e-5, warm-up 10%, student temperature 0.05). Each configuration prints NDCG@10 on the 809
judged train queries and the paired randomisation test against the base model; the test split is
never read. A lean re-implementation of the recipe's path (numpy teacher matrices, a plain AdamW
loop), so a sweep costs one training run per setting instead of a whole `twotower adapt`.

    python benchmarks/adapt_selection.py --teacher-temperature 0.3 --candidates 50
    python benchmarks/adapt_selection.py --teacher-temperature 0.1 --candidates 200 --wise-ft 0.8
    python benchmarks/adapt_selection.py --teacher-temperature 0.1 --full-corpus

``--full-corpus`` normalises the student's softmax over the whole corpus instead of the candidate
list; ``--drop-source`` leaves each sentence's own passage out of the teacher's list;
``--generator crop`` writes Contriever's random crops (5-30 words) instead, ``mix`` half of each;
``--doc-adapter`` trains a residual two-layer adapter on the frozen document embeddings beside
the query tower (zero-initialised, so training starts at the base model; the corpus is never
re-encoded, only its cached vectors are mapped).
Measured (2-core CPU, shared): see BENCHMARKS.md "No-label adaptation".
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from twotower.data.collection import load_collection
from twotower.evaluation.metrics import evaluate_run
from twotower.evaluation.significance import paired_test
from twotower.generation.classic import split_sentences
from twotower.models.embedding_cache import encode_corpus
from twotower.models.encoder import Encoder
from twotower.models.resolve import resolve_model
from twotower.retrieval.bm25 import BM25
from twotower.teachers.fusion import min_max_top

STUDENT, TEACHER = "all-MiniLM-L6-v2", "all-mpnet-base-v2"


def bm25_matrix(bm25: BM25, queries: list[str]) -> np.ndarray:
    out = np.zeros((len(queries), len(bm25.doc_ids)), np.float32)
    for i, query in enumerate(queries):
        try:
            out[i] = bm25.score_documents(query)
        except IndexError:  # no indexable token (as the fusion teacher treats it): scores 0
            pass
    return out


def fused(bm25: np.ndarray, dense: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty(bm25.shape, np.float32)
    for i in range(len(out)):
        out[i] = alpha * min_max_top(bm25[i], 100) + (1 - alpha) * min_max_top(dense[i], 100)
    return out


def ndcg(scores: np.ndarray, qids: list[str], collection) -> tuple[float, dict[str, float]]:
    top = np.argpartition(-scores, 100, axis=1)[:, :100]
    ids = collection.corpus.ids
    run = {q: {ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    means, per = evaluate_run(run, {q: collection.qrels[q] for q in qids}, ["ndcg@10"])
    return means["ndcg@10"], {q: v["ndcg@10"] for q, v in per.items()}


def optimiser(a, model, adapter, steps: int):
    """AdamW over the query tower (and the document adapter at its own rate), linear warm-up over
    the first 10% of ``steps`` and linear decay, as sentence-transformers' trainer schedules."""
    groups = [{"params": list(model.parameters()), "lr": a.learning_rate}]
    if a.doc_adapter:
        groups.append({"params": list(adapter.parameters()), "lr": a.adapter_learning_rate})
    opt = torch.optim.AdamW(groups)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    return opt, sched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher-temperature", type=float, default=0.1)
    ap.add_argument("--student-temperature", type=float, default=0.05)
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--per-doc", type=int, default=2)
    ap.add_argument("--full-corpus", action="store_true")
    ap.add_argument("--drop-source", action="store_true")
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--wise-ft", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--generator", choices=["ict", "crop", "mix"], default="ict")
    ap.add_argument("--doc-adapter", action="store_true")
    ap.add_argument("--adapter-learning-rate", type=float, default=1e-3)
    ap.add_argument("--work", type=Path, default=Path("runs/adapt-selection"))
    ap.add_argument("--name", default=None, help="name of this configuration's per-query file")
    ap.add_argument("--against", default=None, help="a configuration's name to test against")
    a = ap.parse_args()
    torch.manual_seed(0)
    dev = load_collection("scifact", "train")
    corpus = dev.corpus
    encoders = {
        m: Encoder.from_name(m, max_length=256, show_progress=False) for m in (STUDENT, TEACHER)
    }
    documents = {m: encode_corpus(e, corpus)[0] for m, e in encoders.items()}
    qids = dev.judged_query_ids
    dev_queries = [dev.queries[q] for q in qids]

    queries, sources = [], []
    for row, text in enumerate(corpus.texts):
        rng = random.Random(f"{row}")
        sentences = [s for s in split_sentences(text) if 6 <= len(s.split()) <= 40]
        rng.shuffle(sentences)
        words = text.split()
        for k in range(a.per_doc):
            if a.generator == "ict" or (a.generator == "mix" and k % 2 == 0):
                if k >= len(sentences):
                    continue
                queries.append(sentences[k])
            else:
                length = min(rng.randint(5, 30), len(words))
                start = rng.randint(0, len(words) - length)
                queries.append(" ".join(words[start : start + length]))
            sources.append(row)
    src = np.array(sources)
    a.work.mkdir(parents=True, exist_ok=True)
    cached = a.work / f"teacher-{a.generator}-{a.per_doc}.npz"
    if not cached.is_file():
        bm25 = BM25().index(corpus.ids, corpus.texts)
        np.savez(cached, B=bm25_matrix(bm25, queries), Q=encoders[TEACHER].encode_queries(queries))
    z = np.load(cached)
    teacher = fused(z["B"], z["Q"] @ documents[TEACHER].T, a.alpha)
    if a.drop_source:
        teacher[np.arange(len(teacher)), src] = -1
    candidates = np.argsort(-teacher, axis=1)[:, : a.candidates]
    targets = np.take_along_axis(teacher, candidates, 1)
    print(
        f"{len(queries)} queries; teacher's top 1 is the source for {np.mean(candidates[:, 0] == src):.1%}"
    )

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(STUDENT), device="cpu")
    model.max_seq_length = 64
    base = copy.deepcopy(model.state_dict())
    index = torch.from_numpy(documents[STUDENT])
    dim = index.shape[1]
    adapter = torch.nn.Sequential(
        torch.nn.Linear(dim, dim), torch.nn.GELU(), torch.nn.Linear(dim, dim)
    )
    torch.nn.init.zeros_(adapter[2].weight)
    torch.nn.init.zeros_(adapter[2].bias)
    residual_scale = 1.0

    def documents_of(vectors: torch.Tensor) -> torch.Tensor:
        if not a.doc_adapter:
            return vectors
        return torch.nn.functional.normalize(vectors + residual_scale * adapter(vectors), dim=-1)

    def embed(texts: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(
            model(model.preprocess(texts))["sentence_embedding"], dim=-1
        )

    def evaluate() -> tuple[float, dict[str, float]]:
        model.eval()
        with torch.no_grad():
            e = torch.cat([embed(dev_queries[i : i + 128]) for i in range(0, len(qids), 128)])
            d = documents_of(index)
        return ndcg((e @ d.T).numpy(), qids, dev)

    base_ndcg, base_per = evaluate()
    n, batch = len(queries), 32
    per_epoch = n // batch
    steps = per_epoch * a.epochs
    opt, sched = optimiser(a, model, adapter, steps)
    rng = np.random.default_rng(0)
    order = np.concatenate([rng.permutation(n)[: per_epoch * batch] for _ in range(a.epochs)])
    started = time.time()
    model.train()
    for step in range(steps):
        rows = order[step * batch : (step + 1) * batch]
        q = embed([queries[i] for i in rows])
        c = torch.from_numpy(candidates[rows])
        p_teacher = torch.softmax(torch.from_numpy(targets[rows]) / a.teacher_temperature, -1)
        if a.full_corpus:
            logits = q @ documents_of(index).T / a.student_temperature
            if a.drop_source:
                logits = logits.scatter(1, torch.from_numpy(src[rows])[:, None], -1e4)
            log_student = torch.log_softmax(logits, -1).gather(1, c)
        else:
            scores = torch.einsum("bd,bpd->bp", q, documents_of(index[c])) / a.student_temperature
            log_student = torch.log_softmax(scores, -1)
        loss = -(p_teacher * log_student).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    if a.wise_ft < 1:
        state = model.state_dict()
        model.load_state_dict({k: a.wise_ft * state[k] + (1 - a.wise_ft) * base[k] for k in state})
        residual_scale = a.wise_ft  # the adapter's base is the identity: its residual scaled
    trained, per = evaluate()
    test = paired_test(per, base_per)
    print(
        f"SciFact train NDCG@10: base {base_ndcg:.4f} → {trained:.4f} ({test.difference:+.4f},"
        f" p {test.randomisation_p_value:.4f}, {test.wins}/{test.losses}); {steps} steps in"
        f" {time.time() - started:.0f} s"
    )
    if a.name:
        record = {"args": vars(a) | {"work": str(a.work)}, "per_query": per}
        (a.work / f"{a.name}.json").write_text(json.dumps(record))
    if a.against:
        other = json.loads((a.work / f"{a.against}.json").read_text())["per_query"]
        vs = paired_test(per, other)
        print(
            f"  against {a.against}: {vs.difference:+.4f} (p {vs.randomisation_p_value:.4f},"
            f" {vs.wins}/{vs.losses})"
        )


if __name__ == "__main__":
    main()
