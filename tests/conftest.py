"""Shared fixtures: a tiny BEIR collection written by the tests themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DOCS = [
    {"_id": "d1", "title": "Cats", "text": "Cats are small domesticated felines that purr."},
    {"_id": "d2", "title": "Dogs", "text": "Dogs are loyal animals that bark at strangers."},
    {
        "_id": "d3",
        "title": "Rust",
        "text": "Rust is a systems programming language focused on safety.",
    },
    {
        "_id": "d4",
        "title": "Python",
        "text": "Python is a programming language popular in machine learning.",
    },
    {
        "_id": "d5",
        "title": "Tea",
        "text": "Green tea is brewed from the leaves of Camellia sinensis.",
    },
    {"_id": "d6", "title": "", "text": "Coffee beans are roasted seeds of the coffee plant."},
]
QUERIES = [
    {"_id": "q1", "text": "which small feline purrs"},
    {"_id": "q2", "text": "safe systems programming language"},
    {"_id": "q3", "text": "roasted coffee seeds"},
    {"_id": "q4", "text": "an unjudged query"},
]
QRELS = "query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq2\td3\t2\r\nq2\td4\t1\r\nq3\td6\t1\r\n"


def write_collection(root: Path, docs=DOCS, queries=QUERIES, qrels=QRELS, split="test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text(qrels)
    return root


@pytest.fixture
def tiny_collection(tmp_path: Path) -> Path:
    return write_collection(tmp_path / "tiny")


@pytest.fixture
def train_collection(tmp_path):
    """The tiny collection with its test qrels as a train split too."""
    root = write_collection(tmp_path / "c")
    (root / "qrels" / "train.tsv").write_text(QRELS)
    return root


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's caches (embeddings, unpacked models) out of the user's."""
    monkeypatch.setenv("TWOTOWER_CACHE", str(tmp_path_factory.mktemp("cache")))


def build_tiny_bert(folder: Path, *, hidden: int = 32, layers: int = 1, seed: int = 0) -> Path:
    """A randomly initialised sentence-transformers BERT (mean pooling), saved to ``folder``."""
    import re

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted(
        {
            w
            for d in DOCS + QUERIES
            for w in re.findall(r"\w+", (d.get("title", "") + " " + d["text"]).lower())
        }
    )
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + words
        + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
        + list("abcdefghijklmnopqrstuvwxyz0123456789")
    )
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(
        vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=64
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder / "hf")
    tokenizer.save_pretrained(folder / "hf")
    transformer = Transformer(str(folder / "hf"), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, Pooling(hidden, "mean")], device="cpu")
    model.save(str(folder / "st"))
    return folder / "st"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def train_process(recipe: Path, out: Path, *extra: str, **popen) -> subprocess.Popen:
    """``twotower train RECIPE --output-dir OUT`` in a process of its own (to kill it)."""
    command = [
        sys.executable,
        "-m",
        "twotower.cli.main",
        "train",
        str(recipe),
        "--output-dir",
        str(out),
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([*command, *extra], env=env, **popen)


def last_logged_step(run: Path) -> int:
    """The last step ``twotower train`` logged in ``RUN/train_log.jsonl`` (0 before any); a line
    being written is skipped."""
    path = run / "train_log.jsonl"
    if not path.is_file():
        return 0
    steps = [0]
    for line in path.read_text().splitlines():
        try:
            steps.append(int(json.loads(line).get("step", 0)))
        except ValueError:
            pass
    return max(steps)
