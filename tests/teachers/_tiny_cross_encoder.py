"""A tiny randomly initialised cross-encoder (BERT + one-logit head), built by the tests."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import DOCS, QUERIES


def build_tiny_cross_encoder(
    folder: Path, *, hidden: int = 32, num_labels: int = 1, seed: int = 0
) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

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
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    model = BertForSequenceClassification(config)
    # A visible spread of logits, so that tests can tell activations apart.
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
