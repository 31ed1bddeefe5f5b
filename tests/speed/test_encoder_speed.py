"""Fast paths of the encoder keep embeddings honest: bf16, token budgets, duplicate texts, fingerprints."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from twotower.models.encoder import Encoder, route_modules

TEXTS = [
    "cats purr",
    "Rust is a systems programming language focused on safety and speed of programs",
    "tea",
    "Python is a programming language popular in machine learning",
    "dogs bark at strangers",
    "green tea is brewed from the leaves of camellia sinensis",
    "coffee",
    "roasted coffee seeds",
]


@pytest.fixture(scope="module")
def model(tiny_model):
    return SentenceTransformer(str(tiny_model), device="cpu")


def test_bf16_close_to_fp32_with_its_own_fingerprint(model):
    fp32 = Encoder(model, precision="fp32", show_progress=False)
    bf16 = Encoder(model, precision="bf16", show_progress=False)
    a, b = fp32.encode_documents(TEXTS), bf16.encode_documents(TEXTS)
    assert a.dtype == b.dtype == np.float32
    assert np.min(np.sum(a * b, axis=1)) > 0.99  # cosine of unit vectors
    assert fp32.fingerprint_for("document") != bf16.fingerprint_for("document")
    assert fp32.fingerprint != bf16.fingerprint


def test_bf16_keys_carry_the_batching_that_rounds_them(model):
    """bf16 embeddings differ with the padded width a text shares (up to 1e-3 on SciFact between
    batch sizes), so a cache entry must not be read by an encoder that batches otherwise;
    fp32 embeddings do not depend on it, and the default batching keeps its first keys."""

    def key(**kwargs):
        return Encoder(model, show_progress=False, **kwargs).fingerprint_for("document")

    assert key(precision="bf16", batch_size=32) != key(precision="bf16")
    assert key(precision="bf16", max_batch_tokens=4096) != key(precision="bf16")
    assert key(precision="fp32", batch_size=32) == key(precision="fp32")
    assert key(precision="bf16", batch_size=64) == key(precision="bf16")


def test_token_budget_keeps_input_order(model):
    reference = Encoder(model, batch_size=64, show_progress=False).encode_documents(TEXTS)
    for budget in (1, 7, 20, 10_000):
        budgeted = Encoder(model, max_batch_tokens=budget, show_progress=False)
        np.testing.assert_allclose(budgeted.encode_documents(TEXTS), reference, atol=1e-5)
    with pytest.raises(ValueError):
        Encoder(model, max_batch_tokens=0)


def test_token_budget_batches_fit_the_budget(model):
    encoder = Encoder(model, max_batch_tokens=24, show_progress=False)
    features = model.preprocess(TEXTS)
    lengths = features["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    batches = list(encoder._batches(order, lengths))
    assert torch.equal(torch.cat(batches), order)
    for rows in batches:
        assert len(rows) == 1 or len(rows) * int(lengths[rows[0]]) <= 24
    assert len({len(rows) for rows in batches}) > 1  # short texts share a batch, long ones do not


def test_duplicate_texts_are_encoded_once(model, monkeypatch):
    encoder = Encoder(model, batch_size=3, show_progress=False)
    seen: list[list[str]] = []
    original = model.preprocess

    def spy(texts, *args, **kwargs):
        seen.append(list(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(model, "preprocess", spy)
    texts = TEXTS[:3] + TEXTS[:3] + [TEXTS[5]]
    out = encoder.encode_documents(texts)
    assert seen == [TEXTS[:3] + [TEXTS[5]]]
    np.testing.assert_array_equal(out[:3], out[3:6])
    monkeypatch.setattr(model, "preprocess", original)
    np.testing.assert_allclose(out, encoder.encode_documents([t for t in texts]), atol=0)
    assert encoder.encode_documents([]).shape == (0, out.shape[1])


def _reference_fingerprint(encoder: Encoder, task: str) -> str:
    """The fingerprint as first defined: every route hashed on its own."""
    digest = hashlib.sha256()
    for position, module in enumerate(route_modules(encoder.model, task)):
        for key, tensor in module.state_dict().items():
            digest.update(f"{position}.{key}".encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    settings = (encoder.max_length, encoder.prompts[task], encoder.normalize, encoder.use_bf16())
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:24]


def test_fingerprint_values_unchanged_by_shared_hashing(model):
    # torch's keys are those first defined; another back-end adds its name (test_backends.py)
    encoder = Encoder(model, query_prompt="query: ", show_progress=False, backend="torch")
    for task in ("query", "document"):
        assert encoder.fingerprint_for(task) == _reference_fingerprint(encoder, task)
    assert encoder.fingerprint_for("query") != encoder.fingerprint_for("document")  # prompts differ


def test_benchmark_markdown_replaces_only_its_section(tmp_path):
    import speed_report as run_all  # benchmarks/ is on pytest's path

    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    run_all.write_markdown(f"{run_all.START}\nfirst\n{run_all.END}", page)
    run_all.write_markdown(f"{run_all.START}\nsecond\n{run_all.END}", page)
    text = page.read_text()
    assert "keep me" in text and "second" in text and "first" not in text
    assert text.count(run_all.START) == 1


def test_benchmark_table_ratios():
    import speed_report as run_all  # benchmarks/ is on pytest's path

    results = {
        "st_train": {"s_per_step": 8.0, "pairs_per_s": 4.0, "peak_rss_mib": 1000},
        "tt_train_auto": {"s_per_step": 4.0, "pairs_per_s": 8.0, "peak_rss_mib": 900},
        "tt_train_fp32": {"s_per_step": 8.0, "pairs_per_s": 4.0, "peak_rss_mib": 1000},
        "st_eval_cached": {"seconds": 3.0, "peak_rss_mib": 600},
        "tt_eval_cached_auto": {"seconds": 1.0, "peak_rss_mib": 600},
    }
    rows = {r["what"]: r for r in run_all.summarise(results, tokens=100, cfg={})}
    assert rows["training: s/step"]["ratio_fast"] == pytest.approx(2.0)
    assert rows["training: pairs/s"]["ratio_fast"] == pytest.approx(2.0)
    assert rows["training: s/step"]["ratio_fp32"] == pytest.approx(1.0)
    assert rows["evaluation, cached: wall s"]["ratio_fast"] == pytest.approx(3.0)
    assert "✓" in run_all.table(list(rows.values()))
