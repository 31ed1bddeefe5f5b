"""Gradient caching: peak memory and time of one training step, ours vs sentence-transformers.

    python benchmarks/bench_gradcache.py [--batch 64] [--mini-batch 8] [--steps 2]

all-MiniLM-L6-v2, MNRL over (query, positive, hard negative) from SciFact train, documents at
256 tokens, fp32, CPU threads as the machine has. Each case runs in its own process, so peak
RSS (ru_maxrss) is that case's alone; the growth over the loaded model is what the step costs.
Cases: ST's MultipleNegativesRankingLoss and ours without caching; ST's
CachedMultipleNegativesRankingLoss and our CachedSentenceTransformerLoss with the mini-batch.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = ("st-mnrl", "ours", "st-cached-mnrl", "ours-cached")


def run_case(case: str, batch: int, mini_batch: int, steps: int) -> dict:
    import torch

    from twotower.data import load_collection
    from twotower.losses import CachedSentenceTransformerLoss, SentenceTransformerLoss
    from twotower.models.encoder import load_sentence_transformer

    collection = load_collection("scifact", "train")
    qids = collection.judged_query_ids[:batch]
    anchors = [collection.queries[q] for q in qids]
    positives = [collection.corpus.text_of(next(iter(collection.positives(q)))) for q in qids]
    negatives = [
        collection.corpus.texts[(i * 37) % len(collection.corpus)] for i in range(len(qids))
    ]
    model = load_sentence_transformer("all-MiniLM-L6-v2", device="cpu")
    model.max_seq_length = 256
    model.train()
    spec = [{"loss": "contrastive", "preset": "mnrl", "temperature": 0.05}]
    if case == "st-mnrl":
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        loss = MultipleNegativesRankingLoss(model, scale=20.0)
    elif case == "st-cached-mnrl":
        from sentence_transformers.sentence_transformer.losses import (
            CachedMultipleNegativesRankingLoss,
        )

        loss = CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=mini_batch)
    elif case == "ours":
        loss = SentenceTransformerLoss(model, spec)
    else:
        loss = CachedSentenceTransformerLoss(model, spec, mini_batch_size=mini_batch)
    features = [model.tokenize(texts) for texts in (anchors, positives, negatives)]
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, values = [], []
    for step in range(steps):
        torch.manual_seed(step)
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        value = loss(features, None)
        value.backward()
        times.append(time.perf_counter() - start)
        values.append(value.item())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "case": case,
        "s_per_step": min(times),
        "loss": values[0],
        "peak_mib": peak,
        "step_mib": peak - loaded,
        "batch": len(qids),
        "mini_batch": mini_batch if "cached" in case else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--mini-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--case", choices=CASES, help=argparse.SUPPRESS
    )  # one case, in this process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.batch, args.mini_batch, args.steps)))
        return 0
    rows = []
    for case in CASES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--case",
                case,
                "--batch",
                str(args.batch),
                "--mini-batch",
                str(args.mini_batch),
                "--steps",
                str(args.steps),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    by = {r["case"]: r for r in rows}
    print(
        f"\nbatch {args.batch} × (query, positive, hard negative), 256 tokens, fp32, mini-batch {args.mini_batch}\n"
    )
    print("| case | s/step | step memory (MiB over the loaded model) | peak RSS (MiB) | loss |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['s_per_step']:.2f} | {r['step_mib']:.0f} | {r['peak_mib']:.0f} | {r['loss']:.4f} |"
        )
    print(
        f"\nours-cached vs st-cached-mnrl: time × {by['st-cached-mnrl']['s_per_step'] / by['ours-cached']['s_per_step']:.2f}"
        f" (> 1: ours faster), step memory {by['ours-cached']['step_mib']:.0f} vs {by['st-cached-mnrl']['step_mib']:.0f} MiB"
    )
    print(
        f"caching saves {1 - by['ours-cached']['step_mib'] / by['ours']['step_mib']:.0%} of our step memory"
        f" for × {by['ours-cached']['s_per_step'] / by['ours']['s_per_step']:.2f} the time"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
