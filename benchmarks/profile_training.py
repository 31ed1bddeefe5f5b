"""Where a training step's time goes: torch.profiler over a few steps of the MNRL benchmark setup.

Usage: python benchmarks/profile_training.py [--precision fp32|auto] [--steps 3] [--batch 32]
Prints the operators that take the most CPU time (self time), so a missed speed target
comes with the profile that explains it.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="auto", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()

    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from twotower.data import load_collection
    from twotower.models.build import build_model
    from twotower.models.encoder import bf16_supported
    from twotower.training.examples import examples_from_collection

    examples = examples_from_collection(load_collection("scifact", "train"))[
        : args.batch * args.steps
    ]
    model = build_model("all-MiniLM-L6-v2", max_length=args.max_length, device="cpu")
    loss = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    bf16 = args.precision == "bf16" or (
        args.precision == "auto" and bf16_supported(torch.device("cpu"))
    )
    batches = [examples[i : i + args.batch] for i in range(0, len(examples), args.batch)]
    model.train()

    def step(batch):
        features = [
            model.preprocess([e.query for e in batch]),
            model.preprocess([e.positive for e in batch]),
        ]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            value = loss(features, None)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()

    step(batches[0])  # warm-up, outside the profile
    started = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for batch in batches[1:]:
            step(batch)
    seconds = (time.perf_counter() - started) / max(1, len(batches) - 1)
    print(
        f"precision {args.precision} (bf16 {bf16}), batch {args.batch}, max length {args.max_length}: "
        f"{seconds:.2f} s/step (profiled)"
    )
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
