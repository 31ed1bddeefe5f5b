import numpy as np
import pytest

from twotower.errors import ConfigError
from twotower.retrieval.ann import IndexSettings, recall_against_exact, search_run
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


def test_the_flat_index_is_exact_and_drops_the_querys_own_document():
    rng = np.random.default_rng(2)
    documents = _clustered(rng, 500)
    ids = [f"d{i}" for i in range(500)]
    queries, qids = documents[:20], ids[:20]  # queries that are corpus documents
    flat = search_run(qids, queries, ids, documents, 10, IndexSettings("flat"))
    exact = exact_run(qids, queries, ids, documents, 10)
    assert {q: set(r) for q, r in flat.items()} == {q: set(r) for q, r in exact.items()}
    dropped = search_run(
        qids, queries, ids, documents, 10, IndexSettings("flat"), ignore_identical_ids=True
    )
    expected = exact_run(qids, queries, ids, documents, 10, ignore_identical_ids=True)
    for q in qids:
        assert q not in dropped[q] and len(dropped[q]) == 10
        assert set(dropped[q]) == set(expected[q])


def test_recall_against_exact_measures_what_an_index_lost():
    rng = np.random.default_rng(3)
    documents, queries = _clustered(rng, 2000), _clustered(rng, 40)
    ids, qids = [f"d{i}" for i in range(2000)], [f"q{i}" for i in range(40)]
    exact = exact_run(qids, queries, ids, documents, 10)
    assert recall_against_exact(exact, qids, queries, ids, documents, 10) == 1.0
    # Half of each query's exact top 10 removed: recall 0.5, on a sample of queries too.
    halved = {q: dict(list(ranked.items())[5:]) for q, ranked in exact.items()}
    assert recall_against_exact(halved, qids, queries, ids, documents, 10) == 0.5
    assert recall_against_exact(halved, qids, queries, ids, documents, 10, sample=7) == 0.5
    one_probe = search_run(qids, queries, ids, documents, 10, IndexSettings("ivf", probe=1))
    found = np.mean([len(set(one_probe[q]) & set(exact[q])) / 10 for q in qids])
    assert recall_against_exact(one_probe, qids, queries, ids, documents, 10) == pytest.approx(
        found
    )


def test_a_low_recall_is_a_warning_naming_the_knob(caplog):
    from twotower.retrieval.ann import log_recall

    with caplog.at_level("INFO", logger="twotower.retrieval.ann"):
        log_recall("scifact", IndexSettings("ivf"), 100, 0.822)
        log_recall("scifact", IndexSettings("hnsw"), 100, 0.997)
    low, fine = caplog.records
    assert low.levelname == "WARNING" and "raise ivf_probe (--ivf-probe)" in low.message
    assert "recall@100 against exact search 0.822" in low.message
    assert fine.levelname == "INFO" and "0.997" in fine.message
