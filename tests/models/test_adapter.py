"""The residual adapter on the document route: identity at the start, saved and loaded with
the model, and read from the embedding cache under its base route's key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from tests.conftest import DOCS
from twotower.data.collection import load_corpus
from twotower.models.adapter import ResidualAdapter, adapters
from twotower.models.build import build_model
from twotower.models.embedding_cache import encode_corpus
from twotower.models.encoder import Encoder, load_sentence_transformer, route_modules


@pytest.fixture
def with_adapter(tiny_model):
    return build_model(str(tiny_model), towers="separate", document_adapter=True, device="cpu")


def _perturb(model) -> ResidualAdapter:
    (head,) = adapters(route_modules(model, "document"))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.3)
    return head


def test_a_new_adapter_leaves_the_embeddings_and_the_cache_key_as_the_base(
    tiny_model, with_adapter
):
    base = build_model(str(tiny_model), towers="separate", device="cpu")
    texts = [d["text"] for d in DOCS]
    ours, theirs = Encoder(with_adapter, show_progress=False), Encoder(base, show_progress=False)
    np.testing.assert_allclose(
        ours.encode(texts, task="document"), theirs.encode(texts, task="document"), atol=1e-6
    )
    assert ours.fingerprint_for("document", adapted=False) == theirs.fingerprint_for("document")
    assert ours.fingerprint_for("query") == theirs.fingerprint_for("query")
    assert adapters(route_modules(with_adapter, "query")) == []


def test_the_cache_keeps_the_base_route_and_applies_the_adapter_on_reading(
    tiny_model, with_adapter, tiny_collection
):
    corpus = load_corpus(tiny_collection).corpus
    base = Encoder(
        build_model(str(tiny_model), towers="separate", device="cpu"), show_progress=False
    )
    base_vectors, cached = encode_corpus(base, corpus)
    assert not cached
    head = _perturb(with_adapter)
    encoder = Encoder(with_adapter, show_progress=False)
    assert encoder.fingerprint_for("document") != base.fingerprint_for("document")
    vectors, cached = encode_corpus(encoder, corpus)
    assert cached, "an adapted route reads its base route's entry"
    direct = encoder.encode(corpus.texts, task="document")
    np.testing.assert_allclose(vectors, direct, atol=1e-5)
    expected = head.adapt(torch.from_numpy(np.asarray(base_vectors))).detach().numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert np.abs(vectors - base_vectors).max() > 1e-2, "the adapter changes the embeddings"
    unadapted, _ = encode_corpus(encoder, corpus, adapted=False)
    np.testing.assert_array_equal(unadapted, base_vectors)


def test_an_adapter_saves_and_loads_with_the_model(tmp_path, with_adapter):
    head = _perturb(with_adapter)
    head.residual_scale = 0.7
    with_adapter.save(str(tmp_path / "m"))
    loaded = load_sentence_transformer(str(tmp_path / "m"), device="cpu")
    # sentence-transformers alone asks for trust_remote_code to import a twotower class.
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(tmp_path / "m"), device="cpu")
    (again,) = adapters(route_modules(loaded, "document"))
    assert again.residual_scale == 0.7
    for a, b in zip(head.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    texts = [d["text"] for d in DOCS]
    np.testing.assert_allclose(
        Encoder(loaded, show_progress=False).encode(texts, task="document"),
        Encoder(with_adapter, show_progress=False).encode(texts, task="document"),
        atol=1e-6,
    )
    # Building on the saved model adds no second adapter.
    rebuilt = build_model(str(tmp_path / "m"), towers="separate", document_adapter=True)
    assert len(adapters(route_modules(rebuilt, "document"))) == 1


def test_wise_ft_scales_the_residual_and_keeps_the_adapter_weights(with_adapter):
    from twotower.training.wise_ft import base_weights, interpolate

    base = base_weights(with_adapter)
    assert not any(".up." in n or ".down." in n for n in base), "an adapter has no base weights"
    head = _perturb(with_adapter)
    trained = {k: v.clone() for k, v in head.state_dict().items()}
    interpolate(with_adapter, base, 0.6)
    assert head.residual_scale == pytest.approx(0.6)
    for key, value in head.state_dict().items():
        assert torch.equal(value, trained[key])
