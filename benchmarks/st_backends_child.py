"""sentence-transformers' own inference back-ends on one corpus, for benchmarks/backend_gate.py.

Runs in a virtual environment of its own with ``sentence-transformers[onnx,openvino]`` (which
pins sentence-transformers 5.x and transformers 4.57 through optimum, older than twotower's), so
it imports nothing of twotower. For each configuration a user of sentence-transformers would try
on a CPU, it loads the model (exporting the ONNX / OpenVINO graph where the back-end needs one:
timed apart), encodes the documents (timed) and the queries, and writes each configuration's
embeddings as .npy files and one JSON line of timings:

* ``torch`` fp32, and under ``torch.autocast`` bf16 (``encode``'s fastest torch path);
* ``onnx`` fp32 (``backend="onnx"``), graph-optimised (``export_optimized_onnx_model``, O3:
  O2's fusions plus GELU approximation) and int8 dynamic quantisation
  (``export_dynamic_quantized_onnx_model``, avx512_vnni);
* ``openvino`` fp32 (``backend="openvino"``). Its int8 static quantisation
  (``export_static_quantized_openvino_model``) calibrates on a dataset from the Hugging Face
  Hub (GLUE SST-2 by default), which this offline machine cannot reach: not run.

    python benchmarks/st_backends_child.py --model DIR --texts texts.json --queries queries.json \\
        --out DIR [--only onnx-int8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import (
    SentenceTransformer,
    __version__,
    export_dynamic_quantized_onnx_model,
    export_optimized_onnx_model,
)

CONFIGS = [
    "torch-fp32",
    "torch-bf16",
    "onnx-fp32",
    "onnx-O3",
    "onnx-int8",
    "openvino-fp32",
]


def load(name: str, folder: Path) -> SentenceTransformer:
    if name.startswith("torch"):
        return SentenceTransformer(str(folder), device="cpu")
    if name == "onnx-fp32":
        return SentenceTransformer(str(folder), device="cpu", backend="onnx")
    if name == "openvino-fp32":
        return SentenceTransformer(str(folder), device="cpu", backend="openvino")
    plain = SentenceTransformer(str(folder), device="cpu", backend="onnx")
    if name == "onnx-O3":
        export_optimized_onnx_model(plain, "O3", str(folder))
        file_name = "onnx/model_O3.onnx"
    else:
        export_dynamic_quantized_onnx_model(plain, "avx512_vnni", str(folder))
        file_name = "onnx/model_qint8_avx512_vnni.onnx"
    return SentenceTransformer(
        str(folder), device="cpu", backend="onnx", model_kwargs={"file_name": file_name}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--texts", type=Path, required=True)
    ap.add_argument("--queries", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--only", choices=CONFIGS, action="append")
    a = ap.parse_args()
    texts = json.loads(a.texts.read_text())
    queries = json.loads(a.queries.read_text())
    a.out.mkdir(parents=True, exist_ok=True)
    for name in a.only or CONFIGS:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            shutil.copytree(a.model, folder)  # the exports write into the model's folder
            started = time.perf_counter()
            model = load(name, folder)
            model.max_seq_length = a.max_length
            export = time.perf_counter() - started
            autocast = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if name == "torch-bf16"
                else contextlib.nullcontext()
            )
            with autocast:
                started = time.perf_counter()
                documents = model.encode(texts, batch_size=a.batch_size, normalize_embeddings=True)
                seconds = time.perf_counter() - started
                encoded = model.encode(queries, batch_size=a.batch_size, normalize_embeddings=True)
        np.save(a.out / f"{name}-documents.npy", np.asarray(documents, dtype=np.float32))
        np.save(a.out / f"{name}-queries.npy", np.asarray(encoded, dtype=np.float32))
        row = {
            "config": name,
            "sentence_transformers": __version__,
            "export_s": round(export, 2),
            "encode_s": round(seconds, 2),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
