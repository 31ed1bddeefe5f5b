"""What each search index costs in quality on real collections: all-MiniLM-L6-v2 on SciFact,
Cranfield and CISI (test splits), searched exactly, through FAISS's flat index, and through the
IVF and HNSW indexes at their defaults.

    python benchmarks/index_quality.py [--model all-MiniLM-L6-v2] [--collections scifact,cranfield,cisi]

Per collection and index: NDCG@10 and recall@100, the index's recall@100 against exact search
(twotower.retrieval.ann.recall_against_exact), the search time (corpus embeddings come from the
cache, so encoding is not in it), and a paired test over queries of NDCG@10 against exact search
(twotower.evaluation.significance.paired_test). Writes the `index-quality` section of
BENCHMARKS.md and benchmarks/index_quality.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sections import markers, write_section

from twotower.data import load_collection
from twotower.evaluation import evaluate_systems
from twotower.evaluation.significance import paired_test
from twotower.models import Encoder
from twotower.retrieval.ann import IndexSettings

ROOT = Path(__file__).resolve().parents[1]
SECTION = "index-quality"
INDEXES = {
    "exact": IndexSettings("exact"),
    "flat": IndexSettings("flat"),
    "ivf (probe 16)": IndexSettings("ivf"),
    "ivf (probe 64)": IndexSettings("ivf", probe=64),
    "hnsw": IndexSettings("hnsw"),
}


def measure(model: str, collections: list[str]) -> list[dict]:
    encoder = Encoder.from_name(model)
    rows = []
    for name in collections:
        collection = load_collection(name, "test")
        exact_per_query = None
        for label, index in INDEXES.items():
            result = evaluate_systems(collection, encoders=[encoder], index=index)[0]
            per_query = {q: v["ndcg@10"] for q, v in result.per_query.items()}
            if exact_per_query is None:
                exact_per_query = per_query
            test = paired_test(per_query, exact_per_query)
            rows.append(
                {
                    "collection": name,
                    "index": label,
                    "settings": index.describe(),
                    "ndcg@10": result.metrics["ndcg@10"],
                    "recall@100": result.metrics["recall@100"],
                    "index_recall@100": result.timings.get("index_recall", 1.0),
                    "search_s": result.timings["search_s"],
                    "difference": test.difference,
                    "p_value": test.randomisation_p_value,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def section(rows: list[dict], model: str) -> str:
    start, end = markers(SECTION)
    lines = [
        start,
        "## Search indexes: quality on real collections",
        "",
        f"`python benchmarks/index_quality.py`: {model}, test splits, corpus embeddings cached."
        " Index recall is the share of the exact top 100 the index returns (all queries of"
        " these collections); p: paired randomisation test of NDCG@10 against exact search.",
        "",
        "| collection | index | NDCG@10 | recall@100 | index recall@100 | Δ NDCG@10 (p) | search s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delta = "–" if r["index"] == "exact" else f"{r['difference']:+.4f} ({r['p_value']:.2g})"
        lines.append(
            f"| {r['collection']} | {r['index']} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} |"
            f" {r['index_recall@100']:.3f} | {delta} | {r['search_s']:.3f} |"
        )
    lines.append(end)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="dense model name or folder")
    parser.add_argument(
        "--collections", default="scifact,cranfield,cisi", help="comma-separated collections"
    )
    args = parser.parse_args()
    rows = measure(args.model, args.collections.split(","))
    (ROOT / "benchmarks" / "index_quality.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = section(rows, args.model)
    write_section(ROOT / "BENCHMARKS.md", text, SECTION)
    print(text)


if __name__ == "__main__":
    main()
