"""Micro-benchmark: contrastive loss forward + backward on embeddings (no model).

Batch 256 queries × (1 positive + 8 hard negatives), dim 384, float32, CPU. Each configuration is
timed against sentence-transformers' MultipleNegativesRankingLoss.compute_loss_from_embeddings on
the same embeddings where ST has the same objective; the runs of the two are interleaved so that
machine noise hits both alike. Prints the median milliseconds of each, the ratio of the medians (ours / ST), and the fastest run
of each (less sensitive to other processes on a shared machine).

    .venv/bin/python benchmarks/bench_losses.py [--repeats 40] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from twotower.losses import ContrastiveLoss, EmbeddingBatch


def make_inputs(n: int, k: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, dim, generator=g)
    d = torch.randn(n, dim, generator=g)
    h = torch.randn(n, k, dim, generator=g)
    return q, d, h


def time_ours(loss: ContrastiveLoss, q, d, h, ids: dict | None = None) -> float:
    q, d, h = (t.detach().clone().requires_grad_(True) for t in (q, d, h))
    batch = EmbeddingBatch(queries=q, positives=d, hard_negatives=h, **(ids or {}))
    t0 = time.perf_counter()
    loss.compute_loss_from_batch(batch).backward()
    return (time.perf_counter() - t0) * 1e3


def time_st(loss: MultipleNegativesRankingLoss, q, d, h) -> float:
    q, d, h = (t.detach().clone().requires_grad_(True) for t in (q, d, h))
    cols = [q, d, *h.unbind(1)]  # ST takes one (n, dim) column per hard negative
    t0 = time.perf_counter()
    loss.compute_loss_from_embeddings(cols, None).backward()
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--negatives", type=int, default=8)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, k = args.batch, args.negatives
    q, d, h = make_inputs(n, k, args.dim)
    ids = {
        "positive_ids": torch.arange(n),
        "query_ids": torch.arange(n),
        "hard_negative_ids": torch.arange(n, n + n * k).reshape(n, k),
        "query_positive_ids": torch.full((n, 2), -1),
    }

    st = {
        "mnrl": MultipleNegativesRankingLoss(None, scale=20.0),
        "dual": MultipleNegativesRankingLoss(
            None,
            scale=20.0,
            directions=("query_to_doc", "doc_to_query"),
            partition_mode="per_direction",
        ),
        "gte": MultipleNegativesRankingLoss(
            None,
            scale=20.0,
            directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
            partition_mode="joint",
        ),
    }
    cases = [
        # (label, our loss, our extra inputs, ST counterpart or None, factor ours->ST)
        ("MNRL (q2d)", ContrastiveLoss(preset="mnrl"), None, "mnrl"),
        ("MNRL + id masking", ContrastiveLoss(preset="mnrl"), ids, "mnrl"),
        ("MNRL-Dual (q2d + d2q)", ContrastiveLoss(preset="mnrl_dual"), None, "dual"),
        ("GTE joint (4 blocks)", ContrastiveLoss(preset="gte_joint"), None, "gte"),
        ("SamToNe-both (2 softmaxes)", ContrastiveLoss(preset="samtone_both"), None, "gte"),
        ("SamToNe-both + id masking", ContrastiveLoss(preset="samtone_both"), ids, "gte"),
    ]
    print(
        f"batch {n} x {k} hard negatives, dim {args.dim}, float32, CPU, {torch.get_num_threads()} threads, "
        f"{args.repeats} repeats, forward+backward, median ms"
    )
    print(
        f"{'configuration':28s} {'ours':>8s} {'ST':>8s} {'ratio':>6s}"
        f" {'ours min':>9s} {'ST min':>8s}  ST counterpart"
    )
    for label, ours, extra, st_name in cases:
        for _ in range(3):  # warm-up
            time_ours(ours, q, d, h, extra)
            time_st(st[st_name], q, d, h)
        a, b = [], []
        for r in range(args.repeats):
            # Alternate which runs first, so that drift in machine load hits both alike.
            if r % 2:
                b.append(time_st(st[st_name], q, d, h))
                a.append(time_ours(ours, q, d, h, extra))
            else:
                a.append(time_ours(ours, q, d, h, extra))
                b.append(time_st(st[st_name], q, d, h))
        ma, mb = statistics.median(a), statistics.median(b)
        note = {
            "mnrl": "MNRL default",
            "dual": "MNRL per_direction (q2d, d2q)",
            "gte": "MNRL joint, 4 directions",
        }[st_name]
        if label.startswith("SamToNe"):
            note += " (no exact ST counterpart; same 4 blocks)"
        print(f"{label:28s} {ma:8.2f} {mb:8.2f} {ma / mb:6.2f} {min(a):9.2f} {min(b):8.2f}  {note}")


if __name__ == "__main__":
    main()
