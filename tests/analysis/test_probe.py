"""run_probe end to end on a small random collection: files, links, JSON, numbers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from twotower.analysis import FIGURES, TowerEmbeddings, probe_model, run_probe
from twotower.analysis.probe import ProbeSettings
from twotower.errors import ConfigError, InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_collection(seed: int = 0, nq: int = 30, nd: int = 60, dim: int = 16):
    rng = np.random.default_rng(seed)
    query_ids = [f"q{i}" for i in range(nq)]
    doc_ids = [f"d{i}" for i in range(nd)]
    base = rng.normal(size=(nd, dim))
    qrels: dict[str, dict[str, int]] = {}
    positives = []
    for i in range(nq - 2):  # the last two queries are unjudged
        pos = rng.choice(nd, size=1 + (i % 4 == 0), replace=False)
        positives.append(pos)
        qrels[query_ids[i]] = {doc_ids[j]: 1 + (i % 2) for j in pos}
        qrels[query_ids[i]][doc_ids[(pos[0] + 1) % nd]] = 0  # judged non-relevant
    qrels["q-not-in-split"] = {"d0": 1}
    qrels["q0"]["d-not-in-split"] = 1

    def model(name, noise, shift, similarity="cos", scale=1.0):
        q = np.stack([base[p].mean(0) for p in positives] + list(rng.normal(size=(2, dim))))
        q = q + noise * rng.normal(size=q.shape) + shift
        return TowerEmbeddings(
            name,
            query_ids,
            (scale * q).astype(np.float32),
            doc_ids,
            (scale * base).astype(np.float32),
            similarity=similarity,
        )

    models = [
        model("random base", 3.0, 2.0),
        model("fine-tuned", 0.5, 0.0),
        model("dot model (unnormalised)", 1.0, 0.5, similarity="dot", scale=0.2),
    ]
    return models, qrels


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    models, qrels = make_collection()
    result = run_probe(
        models,
        qrels,
        out,
        seed=0,
        tsne_queries=15,
        tsne_random_docs=15,
        tsne_max_iter=250,
        negatives_k=5,
        data="toy",
        split="test",
    )
    return out, result, models


def test_every_figure_is_a_non_empty_png(probe_run):
    out, result, _ = probe_run
    for name in FIGURES:
        path = out / name
        assert path.is_file(), name
        data = path.read_bytes()
        assert len(data) > 1000
        assert data.startswith(PNG_SIGNATURE)
        assert result.files[name] == path


def test_markdown_links_every_image_and_json_loads(probe_run):
    out, result, models = probe_run
    md = (out / "probe.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(FIGURES)
    for link in links:
        assert (out / link).is_file()  # relative to probe.md
    for m in models:
        assert m.name in md
    data = json.loads((out / "probe.json").read_text())  # strict JSON: no NaN
    assert data["data"] == "toy" and data["split"] == "test"
    assert set(data["models"]) == {m.name for m in models}
    assert set(data["figures"]) == set(FIGURES)
    assert data["settings"]["seed"] == 0
    fig = data["figures"]["top1_similarity.png"]["fine-tuned"]
    assert len(fig["score"]) == len(fig["is_relevant"]) == 28  # judged queries only
    tsne = data["figures"]["tsne.png"]["random base"]
    assert len(tsne["query_xy"]) == len(tsne["query_ids"]) == 15
    assert data["models"]["fine-tuned"]["summary"] == pytest.approx(
        result.model("fine-tuned").summary(), rel=1e-6, nan_ok=True
    )


def test_numbers_are_sane(probe_run):
    _, result, _ = probe_run
    base, tuned, dot = (
        result.model(n) for n in ("random base", "fine-tuned", "dot model (unnormalised)")
    )
    assert base.n_judged_queries == 28 and base.n_queries == 30 and base.n_documents == 60
    assert base.n_positive_pairs == sum(1 + (i % 4 == 0) for i in range(28))
    # the fine-tuned queries sit on their positives, the base ones are noisy and shifted
    assert tuned.alignment < base.alignment
    assert tuned.top1.hit_rate > base.top1.hit_rate
    assert base.anisotropy.query_mean_cosine > tuned.anisotropy.query_mean_cosine
    assert base.anisotropy.centroid.distance > tuned.anisotropy.centroid.distance
    for m in (base, tuned, dot):
        assert 0 <= m.alignment <= 4
        assert all(-4 <= v <= 0 for v in m.uniformity.values())
        e = m.negatives.entropy
        assert np.all((e >= 0) & (e <= 1))
        assert m.dual_negatives is not None and m.dual_negatives.direction == "document->query"
        assert np.all(m.negatives.n_negatives == 5)
    assert not dot.norms["input_normalized"] and dot.similarity == "dot"
    table = result.summary_markdown(["random base", "fine-tuned"])
    assert table.splitlines()[0] == "| measure | random base | fine-tuned |"


def test_probe_is_deterministic_without_tsne(tmp_path):
    models, qrels = make_collection(seed=1)
    a = run_probe(models, qrels, None, tsne=False, seed=3, max_pairs=100).to_dict()
    b = run_probe(models, qrels, None, tsne=False, seed=3, max_pairs=100).to_dict()
    assert a == b
    assert "tsne.png" not in a["figures"]
    r = run_probe(models[:1], qrels, tmp_path, tsne=False, dual=False)
    assert not (tmp_path / "tsne.png").exists()
    assert "tsne.png" not in (tmp_path / "probe.md").read_text()
    assert (tmp_path / "top1_similarity.png").read_bytes().startswith(PNG_SIGNATURE)
    assert r.models[0].dual_negatives is None


def test_exclude_same_id_for_queries_that_are_documents():
    # ArguAna-like: every query is also a document; without exclusion each query retrieves
    # itself first.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 8)).astype(np.float32)
    ids = [f"a{i}" for i in range(10)]
    qrels = {ids[i]: {ids[(i + 1) % 10]: 1} for i in range(10)}
    m = TowerEmbeddings("argu", ids, x, ids, x)
    plain = probe_model(m, qrels, ProbeSettings(negatives_k=3))
    assert np.all(plain.top1.doc_rows == plain.top1.query_rows)
    assert plain.top1.scores == pytest.approx(1.0)
    skip = probe_model(m, qrels, ProbeSettings(negatives_k=3, exclude_same_id=True))
    assert np.all(skip.top1.doc_rows != skip.top1.query_rows)


def test_errors():
    models, qrels = make_collection()
    with pytest.raises(ConfigError, match="unique"):
        run_probe([models[0], models[0]], qrels, None, tsne=False)
    with pytest.raises(ConfigError):
        run_probe([], qrels, None)
    with pytest.raises(ConfigError, match="temperature"):
        run_probe(models, qrels, None, temperature=0)
    with pytest.raises(InputError, match="qrels"):
        run_probe(models, {"nope": {"d1": 1}}, None, tsne=False)
