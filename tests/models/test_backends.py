"""The OpenVINO back-end against torch: same embeddings within tolerance, its own cache keys and
graphs, and torch when OpenVINO is missing, fails to export, or is switched off."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from twotower.errors import ConfigError
from twotower.models import backends
from twotower.models.embedding_cache import cache_path, encode_cached
from twotower.models.encoder import Encoder

TEXTS = [
    "cats purr",
    "a",
    "dogs are loyal animals that bark at strangers",
    "rust is a systems programming language focused on safety " * 3,
    "green tea",
    "coffee beans are roasted seeds of the coffee plant",
    "python",
]
# Cosine per row to torch fp32: OpenVINO fp32 is the same arithmetic reordered; at bf16 it is
# torch's own autocast tolerance (test_encoder_speed: > 0.99), measured 0.99999 on MiniLM.
FP32_COSINE = 0.99999
BF16_COSINE = 0.99

needs_openvino = pytest.mark.skipif(
    not backends.openvino_installed(), reason="openvino not installed (the fast extra)"
)


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("TWOTOWER_BACKEND", raising=False)


@pytest.fixture
def model(tiny_model):
    return SentenceTransformer(str(tiny_model), device="cpu")


def encoder(model, backend="openvino", precision="fp32", **kwargs) -> Encoder:
    # batch_size 2 over texts of many lengths: most batches are padded
    return Encoder(
        model, backend=backend, precision=precision, batch_size=2, show_progress=False, **kwargs
    )


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@needs_openvino
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", FP32_COSINE), ("bf16", BF16_COSINE)])
def test_openvino_matches_torch_fp32(model, precision, tolerance):
    reference = encoder(model, "torch").encode_documents(TEXTS)
    fast = encoder(model, precision=precision)
    assert fast.backend == "openvino"
    for task in ("document", "query"):
        out = fast.encode(TEXTS, task=task)
        assert out.dtype == np.float32 and out.shape == reference.shape
        assert cosines(out, reference).min() > tolerance
    assert len(fast._graphs) == 1  # one graph for both tasks of a shared network without prompts


@needs_openvino
def test_auto_is_openvino_on_the_cpu(model):
    assert encoder(model, "auto").backend == "openvino"
    assert backends.resolve_backend("auto", torch.device("cuda")) == "torch"


@needs_openvino
def test_cache_keys_differ_by_backend_and_precision(model):
    keys = {
        (backend, precision): encoder(model, backend, precision).fingerprint_for("document")
        for backend in ("torch", "openvino")
        for precision in ("fp32", "bf16")
    }
    assert len(set(keys.values())) == 4
    paths = {cache_path(encoder(model, b, p), "document", "corpus") for b, p in keys}
    assert len(paths) == 4


@needs_openvino
def test_graphs_are_keyed_by_weights(model, tiny_model):
    base = encoder(model)
    base.encode_documents(TEXTS)
    base_graph = backends.graph_path(base, "document")
    assert base_graph.is_file()

    tuned = SentenceTransformer(str(tiny_model), device="cpu")
    with torch.no_grad():  # word embeddings moved: a fine-tuned model
        weight = tuned[0].auto_model.embeddings.word_embeddings.weight
        weight += 0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    fast = encoder(tuned)
    assert backends.graph_path(fast, "document") != base_graph
    assert fast.fingerprint_for("document") != base.fingerprint_for("document")
    out = fast.encode_documents(TEXTS)
    assert cosines(out, encoder(tuned, "torch").encode_documents(TEXTS)).min() > FP32_COSINE
    assert cosines(out, base.encode_documents(TEXTS)).min() < 0.999  # not the base's graph


@needs_openvino
def test_a_cached_graph_is_reused_and_a_damaged_one_exported_again(model, monkeypatch, caplog):
    first = encoder(model, precision="bf16")
    expected = first.encode_documents(TEXTS)
    path = backends.graph_path(first, "document")

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    with monkeypatch.context() as patch:
        patch.setattr(backends, "_convert", no_export)
        # to the bit: the exporting process ran the graph as cached (fp16 weights at bf16)
        np.testing.assert_array_equal(
            encoder(model, precision="bf16").encode_documents(TEXTS), expected
        )

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="twotower.models.backends"):
        again = encoder(model, precision="bf16").encode_documents(TEXTS)
    assert "does not match its checksum" in caplog.text
    np.testing.assert_array_equal(again, expected)


def test_falls_back_to_torch_when_openvino_is_missing(model, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails
    monkeypatch.setattr(backends, "_said", set())
    with caplog.at_level(logging.INFO, logger="twotower.models.backends"):
        first, second = encoder(model, "auto"), encoder(model, "openvino")
    assert first.backend == second.backend == "torch"
    assert [r.message for r in caplog.records].count(
        "openvino is not installed (pip install 'twotower[fast]'): encoding with torch"
    ) == 1  # one line, however many encoders
    assert first.fingerprint_for("document") == encoder(model, "torch").fingerprint_for("document")
    np.testing.assert_allclose(
        first.encode_documents(TEXTS), encoder(model, "torch").encode_documents(TEXTS), atol=0
    )


@needs_openvino
def test_a_failed_export_falls_back_to_torch_under_torch_keys(model, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("cannot trace this model\nsecond line")

    monkeypatch.setattr(backends, "_convert", broken)
    fast = encoder(model)
    openvino_path = cache_path(fast, "document", "corpus")
    with caplog.at_level(logging.WARNING, logger="twotower.models.backends"):
        embeddings, cached = encode_cached(fast, TEXTS, "document", "corpus")
    assert not cached and fast.backend == "torch"
    failures = [r.message for r in caplog.records if "export" in r.message]
    assert failures == [
        "openvino export of the document route failed (cannot trace this model): encoding with torch"
    ]
    torch_encoder = encoder(model, "torch")
    assert cache_path(fast, "document", "corpus") == cache_path(torch_encoder, "document", "corpus")
    assert not openvino_path.exists()  # torch's embeddings are never cached under OpenVINO's key
    assert cache_path(torch_encoder, "document", "corpus").is_file()
    np.testing.assert_allclose(embeddings, torch_encoder.encode_documents(TEXTS), atol=0)


def test_the_switch_forces_torch(model, monkeypatch):
    monkeypatch.setenv("TWOTOWER_BACKEND", "torch")
    forced = encoder(model, "openvino")
    assert forced.backend == "torch" and not forced._graphs
    forced.encode_documents(TEXTS)
    assert not forced._graphs
    monkeypatch.setenv("TWOTOWER_BACKEND", "onnx")
    with pytest.raises(ConfigError, match="backend must be one of auto, torch, openvino"):
        encoder(model)


@needs_openvino
def test_a_document_adapter_runs_after_the_graph(tiny_model):
    """The graph is the route under its adapters (one graph for the base and the adapted model),
    and the adapter applied after it gives torch's embeddings."""
    from twotower.models.adapter import adapters
    from twotower.models.build import build_model
    from twotower.models.encoder import route_modules

    model = build_model(str(tiny_model), towers="separate", document_adapter=True, device="cpu")
    (head,) = adapters(route_modules(model, "document"))
    torch.manual_seed(3)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.3)
    fast, exact = encoder(model), encoder(model, backend="torch")
    vectors = fast.encode(TEXTS, task="document")
    assert cosines(vectors, exact.encode(TEXTS, task="document")).min() > FP32_COSINE
    unadapted = fast.encode(TEXTS, task="document", adapted=False)
    assert cosines(vectors, unadapted).min() < 0.99, "the adapter moved the embeddings"
    assert backends.graph_path(fast, "document").name.startswith(
        fast.fingerprint_for("document", adapted=False)
    )
