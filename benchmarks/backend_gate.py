"""The inference back-ends side by side on one corpus: speed, cosine to fp32, NDCG@10.

For each of torch fp32, torch bf16 autocast, OpenVINO fp32 and OpenVINO bf16 (twotower's
``Encoder(backend=..., precision=...)``), all-MiniLM-L6-v2 encodes a collection's whole corpus
and its judged test queries with no cache (an OpenVINO route's export is timed apart from its
encode), and the script prints documents/s, the ratio to torch's bf16 autocast (the fastest torch
path, what sentence-transformers' ``encode`` gives under autocast), the per-document cosine to
torch fp32 (mean and min) and NDCG@10. The quality gate of issue #22: NDCG@10 within 0.005 of
fp32. Results: benchmarks/backend_gate.json.

With ``--st-python``, the python of a virtual environment holding
``sentence-transformers[onnx,openvino]``, sentence-transformers' own back-ends run on the same
texts in that environment (benchmarks/st_backends_child.py: torch fp32 and bf16 autocast, ONNX
fp32, O3-optimised and int8, OpenVINO fp32), each a row beside twotower's with the same cosine
and NDCG@10; ``×`` then reads against the fastest of them that passes the gate, the best a
sentence-transformers user can pick on this CPU.

    python benchmarks/backend_gate.py --collection scifact
    python -m venv .venv-st && .venv-st/bin/pip install torch==2.13.0 "sentence-transformers[onnx,openvino]"
    python benchmarks/backend_gate.py --collection cisi --st-python .venv-st/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from twotower.data.collection import load_collection
from twotower.evaluation.metrics import evaluate_run
from twotower.models import backends
from twotower.models.encoder import Encoder, load_sentence_transformer
from twotower.models.resolve import resolve_model

CONFIGS = [("torch", "fp32"), ("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16")]
GATE = 0.005


def ndcg(queries: np.ndarray, documents: np.ndarray, qids, collection) -> float:
    scores = queries @ documents.T
    top = np.argpartition(-scores, 100, axis=1)[:, :100]
    ids = collection.corpus.ids
    run = {q: {ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    means, _ = evaluate_run(run, {q: collection.qrels[q] for q in qids}, ["ndcg@10"])
    return means["ndcg@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--output", type=Path, default=Path(__file__).with_name("backend_gate.json"))
    ap.add_argument(
        "--st-python",
        type=Path,
        help="python of an environment with sentence-transformers[onnx,openvino]: its back-ends too",
    )
    a = ap.parse_args()
    collection = load_collection(a.collection, "test")
    qids = collection.judged_query_ids
    texts = collection.corpus.texts
    model = load_sentence_transformer(a.model, device="cpu")
    rows, reference = [], None
    for backend, precision in CONFIGS:
        if backend == "openvino" and not backends.openvino_installed():
            print("openvino not installed: skipped")
            continue
        encoder = Encoder(
            model,
            backend=backend,  # type: ignore[arg-type]
            precision=precision,  # type: ignore[arg-type]
            max_length=a.max_length,
            show_progress=False,
        )
        started = time.perf_counter()
        backends.prepare_backend(encoder, "document", texts)  # the export (cached after)
        backends.prepare_backend(encoder, "query", [collection.queries[q] for q in qids])
        export = time.perf_counter() - started
        started = time.perf_counter()
        documents = encoder.encode(texts, task="document")
        seconds = time.perf_counter() - started
        queries = encoder.encode([collection.queries[q] for q in qids], task="query")
        if reference is None:
            reference = documents
        cos = np.sum(documents * reference, axis=1)
        row = {
            "backend": backend,
            "precision": precision,
            "export_s": round(export, 2),
            "encode_s": round(seconds, 2),
            "documents_per_s": round(len(texts) / seconds, 1),
            "cosine_mean": float(cos.mean()),
            "cosine_min": float(cos.min()),
            "ndcg@10": ndcg(queries, documents, qids, collection),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.st_python:
        rows += st_rows(
            a, texts, [collection.queries[q] for q in qids], reference, qids, collection
        )
    fp32 = rows[0]["ndcg@10"]
    st_best = [r for r in rows if r["backend"].startswith("st-") and _passes(r, fp32)]
    against = (
        min(st_best, key=lambda r: r["encode_s"])
        if st_best
        else next(r for r in rows if r["backend"] == "torch" and r["precision"] == "bf16")
    )
    label = f"{against['backend']} {against['precision']}"
    print(f"\n{a.collection}, {len(texts)} documents, {a.model}, max length {a.max_length}")
    print(
        f"| back-end | precision | export s | encode s | docs/s | × {label} | cosine mean (min) | NDCG@10 | gate |"
    )
    print("|---|---|---:|---:|---:|---:|---|---:|---|")
    for r in rows:
        ratio = against["encode_s"] / r["encode_s"]
        gate = "pass" if _passes(r, fp32) else "FAIL"
        print(
            f"| {r['backend']} | {r['precision']} | {r['export_s']:.1f} | {r['encode_s']:.1f} |"
            f" {r['documents_per_s']:.1f} | {ratio:.2f}× | {r['cosine_mean']:.6f}"
            f" ({r['cosine_min']:.6f}) | {r['ndcg@10']:.4f} | {gate} |"
        )
    a.output.write_text(json.dumps({"collection": a.collection, "rows": rows}, indent=1) + "\n")


def _passes(row: dict, fp32: float) -> bool:
    return abs(row["ndcg@10"] - fp32) <= GATE


def st_rows(a, texts, queries, reference, qids, collection) -> list[dict]:
    """sentence-transformers' back-ends, run by st_backends_child.py in ``a.st_python``'s
    environment on the same texts; their embeddings scored here as twotower's are."""
    child = Path(__file__).with_name("st_backends_child.py")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "texts.json").write_text(json.dumps(texts))
        (work / "queries.json").write_text(json.dumps(queries))
        command = [
            str(a.st_python),
            str(child),
            "--model",
            str(resolve_model(a.model)),
            "--texts",
            str(work / "texts.json"),
            "--queries",
            str(work / "queries.json"),
            "--out",
            str(work),
            "--max-length",
            str(a.max_length),
        ]
        for line in subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines():  # fmt: skip
            timing = json.loads(line)
            name = timing["config"]
            documents = np.load(work / f"{name}-documents.npy")
            encoded = np.load(work / f"{name}-queries.npy")
            cos = np.sum(documents * reference, axis=1)
            backend, _, precision = name.partition("-")
            row = {
                "backend": f"st-{backend}",
                "precision": precision,
                "sentence_transformers": timing["sentence_transformers"],
                "export_s": timing["export_s"],
                "encode_s": timing["encode_s"],
                "documents_per_s": round(len(texts) / timing["encode_s"], 1),
                "cosine_mean": float(cos.mean()),
                "cosine_min": float(cos.min()),
                "ndcg@10": ndcg(encoded, documents, qids, collection),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
