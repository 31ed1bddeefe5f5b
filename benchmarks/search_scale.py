"""Top-100 search at scale: 10,000 queries over 1,000,000 random 384-dimensional unit vectors.

    python benchmarks/search_scale.py [--documents 1000000] [--queries 10000] [--k 100]

Each method runs in a process of its own on the same vectors, memory-mapped from .npy files, and
reports its wall time and its peak resident memory (ru_maxrss):

- twotower's exact search as it runs by default (twotower.retrieval.dense.exact_search: FAISS's
  brute-force k-NN, equal scores put in document order), and with its torch engine (the path
  without FAISS: blocks of at most 2^24 scores and a running top-k, never the queries × corpus
  matrix);
- sentence-transformers' `util.semantic_search` (the tool a user would pick) in its best
  configuration for unit vectors, `score_function=util.dot_score`, default chunk sizes;
- FAISS `IndexFlatIP` used directly (exact; the limit);
- twotower's IVF index (twotower.retrieval.ann, FAISS IndexIVFFlat), with recall@100 against
  the exact top 100.

Writes the `search-scale` section of BENCHMARKS.md and benchmarks/search_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sections import markers, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "search-scale"
METHODS = (
    "twotower-exact",
    "twotower-exact-torch",
    "st-semantic-search",
    "faiss-flat",
    "twotower-ivf",
)
IVF_LISTS, IVF_PROBE = 1024, 32


def make_vectors(folder: Path, documents: int, queries: int, dim: int = 384) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("documents", documents), ("queries", queries)):
        out = np.lib.format.open_memmap(folder / f"{name}.npy", "w+", np.float32, (n, dim))
        for start in range(0, n, 100_000):
            block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
            out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        out.flush()


def run_method(method: str, folder: Path, k: int) -> dict:
    import torch

    documents = np.load(folder / "documents.npy", mmap_mode="r")
    queries = np.load(folder / "queries.npy", mmap_mode="r")
    started = time.perf_counter()
    if method in ("twotower-exact", "twotower-exact-torch"):
        from twotower.retrieval.dense import exact_search

        engine = "torch" if method == "twotower-exact-torch" else None
        _, indices = exact_search(np.asarray(queries), documents, k, engine=engine)
    elif method == "st-semantic-search":
        from sentence_transformers import util

        # Its best configuration for unit vectors: dot products (the default cos_sim
        # re-normalises every corpus chunk for every query chunk).
        hits = util.semantic_search(
            torch.from_numpy(np.asarray(queries)),
            torch.from_numpy(np.asarray(documents)),
            top_k=k,
            score_function=util.dot_score,
        )
        indices = np.array([[h["corpus_id"] for h in row] for row in hits])
    elif method == "faiss-flat":
        import faiss

        index = faiss.IndexFlatIP(documents.shape[1])
        index.add(np.ascontiguousarray(documents))
        _, indices = index.search(np.ascontiguousarray(queries), k)
    elif method == "twotower-ivf":
        from twotower.retrieval.ann import IndexSettings, build_index

        index = build_index(documents, IndexSettings("ivf", lists=IVF_LISTS, probe=IVF_PROBE), k)
        built = time.perf_counter() - started
        _, indices = index.search(np.ascontiguousarray(queries), k)
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - started
    np.save(folder / f"{method}.npy", np.asarray(indices, dtype=np.int64))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"method": method, "seconds": seconds, "peak_bytes": peak}
    if method == "twotower-ivf":
        result["build_seconds"] = built
    return result


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, exact, strict=True)])
    )


def section(rows: list[dict], args) -> str:
    start, end = markers(SECTION)
    base = next(r for r in rows if r["method"] == "st-semantic-search")
    lines = [
        start,
        "## Search at scale: top-100 over a million vectors",
        "",
        f"`python benchmarks/search_scale.py` (2 CPU cores): {args.queries:,} queries, top {args.k},"
        f" over {args.documents:,} random 384-dimensional unit vectors (float32, {args.documents * 384 * 4 / 2**30:.2f} GiB,"
        " memory-mapped). Each method in a process of its own; peak = its resident memory, the"
        " vectors it read included.",
        "",
        "| method | wall s | × sentence-transformers | peak GiB | recall@100 vs exact |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        extra = f" (index built in {r['build_seconds']:.0f} s)" if "build_seconds" in r else ""
        lines.append(
            f"| {r['method']}{extra} | {r['seconds']:.1f} | {base['seconds'] / r['seconds']:.2f}"
            f" | {r['peak_bytes'] / 2**30:.2f} | {r['recall']:.3f} |"
        )
    lines += [
        "",
        f"IVF: {IVF_LISTS} lists, {IVF_PROBE} probed per query. × sentence-transformers: its time over"
        " the method's (above 1 is faster).",
        "",
        end,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1_000_000, help="corpus vectors")
    parser.add_argument("--queries", type=int, default=10_000, help="query vectors")
    parser.add_argument("--k", type=int, default=100, help="top k")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)  # a child's run
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.method:
        print(json.dumps(run_method(args.method, args.folder, args.k)))
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        folder = Path(tmp)
        make_vectors(folder, args.documents, args.queries)
        rows = []
        for method in METHODS:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--method",
                    method,
                    "--folder",
                    str(folder),
                    "--k",
                    str(args.k),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
        exact = np.load(folder / "faiss-flat.npy")
        for r in rows:
            r["recall"] = recall(np.load(folder / f"{r['method']}.npy"), exact)
    (ROOT / "benchmarks" / "search_scale.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = section(rows, args)
    write_section(args.benchmarks, text, SECTION)
    print(text)


if __name__ == "__main__":
    main()
