"""Peak memory of a command and its children, sampled every 0.2 s, with when it happened.

    python benchmarks/peak_rss.py twotower run recipes/quickstart.yaml --output-dir /tmp/qs

Prints the command's output lines prefixed with elapsed seconds and the current RSS (progress
bars left out), then ``PEAK <GiB> at <s>``; the samples go to ``peak_rss.tsv`` (or --tsv).
ru_maxrss alone would give the peak but not the phase that reached it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil


def main(argv: list[str]) -> int:
    tsv = "peak_rss.tsv"
    if argv[:1] == ["--tsv"]:
        tsv, argv = argv[1], argv[2:]
    if not argv:
        raise SystemExit(__doc__)
    started = time.time()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    root = psutil.Process(proc.pid)
    samples: list[tuple[float, int]] = []

    def sample() -> None:
        while proc.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            except psutil.Error:
                continue
            samples.append((time.time() - started, rss))
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    for line in proc.stdout:  # type: ignore[union-attr]
        for part in line.replace("\r", "\n").split("\n"):
            part = part.strip()
            if part and "it/s]" not in part and "s/it]" not in part and "text/s]" not in part:
                rss = samples[-1][1] / 2**30 if samples else 0.0
                print(f"{time.time() - started:7.1f}s {rss:5.2f}G | {part[:160]}", flush=True)
    proc.wait()
    peak_t, peak = max(samples, key=lambda s: s[1]) if samples else (0.0, 0)
    print(f"PEAK {peak / 2**30:.2f} GiB at {peak_t:.1f}s; exit {proc.returncode}")
    with open(tsv, "w") as handle:
        handle.writelines(f"{t:.1f}\t{r / 2**30:.3f}\n" for t, r in samples)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
