import numpy as np
import pytest

from twotower.errors import ConfigError
from twotower.retrieval.ann import IndexSettings, search_run
from twotower.retrieval.dense import exact_run

pytest.importorskip("faiss")


def _clustered(rng, n, dim=16, centres=20):
    means = rng.normal(size=(centres, dim))
    x = means[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("settings", [IndexSettings("ivf", probe=8), IndexSettings("hnsw")])
def test_an_approximate_index_finds_most_of_the_exact_top_k(settings):
    rng = np.random.default_rng(0)
    documents, queries = _clustered(rng, 4000), _clustered(rng, 50)
    doc_ids, query_ids = [f"d{i}" for i in range(4000)], [f"q{i}" for i in range(50)]
    exact = exact_run(query_ids, queries, doc_ids, documents, 10)
    approximate = search_run(query_ids, queries, doc_ids, documents, 10, settings)
    recall = np.mean([len(set(approximate[q]) & set(exact[q])) / 10 for q in query_ids])
    assert recall >= 0.9
    for q in query_ids:  # scores are the same inner products, ranked best first
        scores = list(approximate[q].values())
        assert scores == sorted(scores, reverse=True)
        for d, s in approximate[q].items():
            assert s == pytest.approx(
                float(documents[doc_ids.index(d)] @ queries[int(q[1:])]), abs=1e-5
            )


def test_exact_settings_are_the_exact_search():
    rng = np.random.default_rng(1)
    documents, queries = _clustered(rng, 300), _clustered(rng, 5)
    ids, qids = [str(i) for i in range(300)], [str(i) for i in range(5)]
    assert search_run(qids, queries, ids, documents, 7) == exact_run(
        qids, queries, ids, documents, 7
    )


def test_bad_index_settings_are_refused():
    with pytest.raises(ConfigError, match="index type"):
        IndexSettings("annoy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="probe"):
        IndexSettings("ivf", probe=0)
