"""Round-trip filtering on the fixture collection: BM25, a fixed second retriever, a table teacher."""

import json

import numpy as np
import pytest

from tests.conftest import DOCS
from tests.negatives._fakes import FixedRetriever, TableTeacher
from twotower.data.collection import load_corpus
from twotower.data.synthetic import load_synthetic_queries
from twotower.errors import ConfigError
from twotower.generation.roundtrip import roundtrip_filter, write_filtered
from twotower.negatives.retrievers import BM25Retriever
from twotower.teachers.base import Teacher

TEXT = {d["_id"]: (d["title"] + " " + d["text"]).strip() for d in DOCS}
QUERIES = [
    {"query": "which small feline purrs", "doc_id": "d1", "query_id": "g1", "type": "questions"},
    {"query": "roasted coffee seeds", "doc_id": "d6", "query_id": "g2", "type": "keywords"},
    {"query": "green tea leaves", "doc_id": "d2", "query_id": "g3", "type": "keywords"},
    {
        "query": "systems programming language",
        "doc_id": "d3",
        "query_id": "g4",
        "type": "questions",
    },
]


class PairTeacher(Teacher):
    """Scores by (query text, document text): the percentile rules need query-dependent scales."""

    kind = "pairs"

    def __init__(self, scores: dict[tuple[str, str], float]) -> None:
        super().__init__(name="pairs", show_progress=False, use_cache=False)
        self.scores = scores

    @property
    def fingerprint(self) -> str:
        return "pairs"

    def _score_batch(self, query_texts, doc_texts):
        return np.array([self.scores[q, d] for q, d in zip(query_texts, doc_texts, strict=True)])


@pytest.fixture
def synthetic(tiny_collection, tmp_path):
    path = tmp_path / "generated.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    collection, _ = load_synthetic_queries(path, load_corpus(str(tiny_collection)))
    return path, collection, {q["query_id"]: q["type"] for q in QUERIES}


def test_a_query_is_kept_only_if_it_finds_its_passage_and_the_teacher_agrees(synthetic, tmp_path):
    path, collection, types = synthetic
    corpus_text = {d: collection.corpus.text_of(d) for d in collection.corpus.ids}
    # The teacher prefers d4 over d3 (g4's source); everything else scores by position.
    scores = {
        corpus_text[d]: s
        for d, s in zip(["d1", "d2", "d3", "d4", "d5", "d6"], [5, 1, 2, 3, 1, 4], strict=True)
    }
    verdicts, report = roundtrip_filter(
        collection, types, [BM25Retriever()], top_k=2, teacher=TableTeacher(scores)
    )
    assert verdicts["g1"].kept and verdicts["g1"].source_rank == 1
    assert verdicts["g2"].kept
    assert verdicts["g3"].step == "retrieval" and "not in the top 2" in verdicts["g3"].reason
    assert verdicts["g4"].step == "teacher" and verdicts["g4"].teacher_first == "d4"
    rows = {row["type"]: row for row in report.table()}
    assert rows["keywords"]["retrieval"] == 1 and rows["keywords"]["retrieval_rate"] == 0.5
    assert rows["questions"]["retrieval"] == 2 and rows["questions"]["teacher"] == 1
    assert rows["all"]["teacher"] == 2 and rows["all"]["generated"] == 4

    kept, dropped = write_filtered(path, verdicts, tmp_path / "kept.jsonl")
    kept_lines = [json.loads(line) for line in kept.read_text().splitlines()]
    dropped_lines = [json.loads(line) for line in dropped.read_text().splitlines()]
    assert [k["query_id"] for k in kept_lines] == ["g1", "g2"]
    assert {d["query_id"]: d["filter"]["step"] for d in dropped_lines} == {
        "g3": "retrieval",
        "g4": "teacher",
    }
    # The kept file trains: it is a synthetic-queries file of the same corpus.
    again, per_type = load_synthetic_queries(kept, collection)
    assert set(again.queries) == {"g1", "g2"} and per_type == {"questions": 1, "keywords": 1}


def test_the_kept_best_percentile_rule_drops_the_weakest_kept_queries(synthetic):
    _, collection, types = synthetic
    scores = {
        collection.corpus.text_of(d): s
        for d, s in zip(["d1", "d2", "d3", "d4", "d5", "d6"], [9, 0, 5, 1, 0, 3], strict=True)
    }
    verdicts, report = roundtrip_filter(
        collection,
        types,
        [BM25Retriever()],
        top_k=3,
        teacher=TableTeacher(scores),
        percentile=50,
        percentile_of="best",
        per_type=False,
    )
    kept = {q for q, v in verdicts.items() if v.kept}
    assert kept == {"g1", "g4"}  # g2's source (3) is below the median of 9, 5, 3
    assert verdicts["g2"].step == "percentile" and report.thresholds == {"all": 5}


# Each query's three candidates (source first) and the teacher's scores of them: questions on
# one scale, keywords on a lower one, as a teacher's logits can differ between query types.
CANDIDATES = {
    "g1": (["d1", "d4", "d5"], [9, 8, 7]),
    "g4": (["d3", "d4", "d5"], [9, 2, 1]),
    "g2": (["d6", "d4", "d5"], [-5, -6, -7]),
    "g3": (["d2", "d4", "d5"], [-7.5, -8, -9]),
}


def candidates_and_teacher(collection):
    ranking = {q: docs + [d for d in TEXT if d not in docs] for q, (docs, _) in CANDIDATES.items()}
    scores = {
        (collection.queries[q], collection.corpus.text_of(d)): s
        for q, (docs, values) in CANDIDATES.items()
        for d, s in zip(docs, values, strict=True)
    }
    return FixedRetriever(ranking), PairTeacher(scores)


def test_the_percentile_cut_is_against_all_candidate_scores_per_query_type(synthetic):
    _, collection, types = synthetic
    retriever, teacher = candidates_and_teacher(collection)

    # Tamber et al.'s rule: each type's 25th percentile of every candidate score (questions
    # 3.25, keywords -7.875); a source ranked first by the teacher is rarely below it.
    verdicts, report = roundtrip_filter(
        collection, types, [retriever], top_k=3, teacher=teacher, percentile=25
    )
    assert all(v.kept for v in verdicts.values())
    assert report.thresholds == pytest.approx({"questions": 3.25, "keywords": -7.875})
    assert report.passed["percentile"] == report.passed["teacher"]

    # One distribution for all types: the keywords' lower scale puts g3 below -7.125.
    verdicts, report = roundtrip_filter(
        collection, types, [retriever], top_k=3, teacher=teacher, percentile=25, per_type=False
    )
    assert [q for q, v in verdicts.items() if not v.kept] == ["g3"]
    assert report.thresholds == pytest.approx({"all": -7.125})

    # The kept queries' best scores: a quarter of the survivors go by construction.
    verdicts, _ = roundtrip_filter(
        collection,
        {q: "questions" for q in types},
        [retriever],
        top_k=3,
        teacher=teacher,
        percentile=25,
        percentile_of="best",
    )
    assert [q for q, v in verdicts.items() if not v.kept] == ["g3"]
    assert verdicts["g3"].step == "percentile" and "below the 25th percentile" in (
        verdicts["g3"].reason
    )


def test_several_retrievers_fused_by_reciprocal_rank(synthetic):
    _, collection, types = synthetic
    # A second retriever that ranks g3's true source first lifts it into the fused top 2.
    fixed = FixedRetriever({q: ["d2", "d5", "d1", "d3", "d4", "d6"] for q in collection.queries})
    alone, _ = roundtrip_filter(collection, types, [BM25Retriever()], top_k=1)
    fused, _ = roundtrip_filter(
        collection, types, [BM25Retriever(), fixed], top_k=2, first_stage_rule="fused"
    )
    assert not alone["g3"].kept and fused["g3"].kept


def test_the_source_in_the_top_k_of_any_one_retriever_is_enough(synthetic):
    _, collection, types = synthetic
    # g1's source d1 is second for the first retriever and absent from the second's top 2;
    # fused, d4 (in both lists) and d5 (first in the second) outrank it.
    first = FixedRetriever({q: ["d4", "d1", "d2", "d3", "d5", "d6"] for q in collection.queries})
    second = FixedRetriever({q: ["d5", "d4", "d2", "d3", "d1", "d6"] for q in collection.queries})
    anyone, _ = roundtrip_filter(collection, types, [first, second], top_k=2)
    fused, _ = roundtrip_filter(
        collection, types, [first, second], top_k=2, first_stage_rule="fused"
    )
    assert anyone["g1"].kept and anyone["g1"].source_rank == 2
    assert fused["g1"].step == "retrieval" and "not in the top 2" in fused["g1"].reason
    assert anyone["g2"].reason == "source passage not in the top 2 of any retriever"

    # The teacher reranks the union of the retrievers' lists: d5, only in the second's,
    # outscores g1's source.
    scores = {collection.corpus.text_of(d): float(d == "d5") for d in collection.corpus.ids}
    table = TableTeacher(scores)
    reranked, _ = roundtrip_filter(collection, types, [first, second], top_k=2, teacher=table)
    assert reranked["g1"].step == "teacher" and reranked["g1"].teacher_first == "d5"
    assert table.scored == 3  # g1's candidates d4, d1 and d5


def test_bad_settings_are_refused(synthetic):
    _, collection, types = synthetic
    with pytest.raises(ConfigError, match="needs a teacher"):
        roundtrip_filter(collection, types, [BM25Retriever()], percentile=25)
    with pytest.raises(ConfigError, match="at least one retriever"):
        roundtrip_filter(collection, types, [])
    with pytest.raises(ConfigError, match="first_stage_rule must be 'any' or 'fused'"):
        roundtrip_filter(collection, types, [BM25Retriever()], first_stage_rule="union")
    with pytest.raises(ConfigError, match="percentile_of must be 'all' or 'best'"):
        roundtrip_filter(collection, types, [BM25Retriever()], percentile_of="top")


def test_the_filter_command_writes_kept_dropped_and_a_report(synthetic, tiny_collection, tmp_path):
    from typer.testing import CliRunner

    from twotower.cli.main import app

    path, _, _ = synthetic
    out = tmp_path / "kept.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "filter",
            str(path),
            "--data",
            str(tiny_collection),
            "--retriever",
            "bm25",
            "--top-k",
            "1",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["query_id"] for x in out.read_text().splitlines()] == ["g1", "g2", "g4"]
    report = json.loads((tmp_path / "kept.report.json").read_text())
    assert report["keep_rates"][-1] == {
        "type": "all",
        "generated": 4,
        "retrieval": 3,
        "retrieval_rate": 0.75,
    }
    assert "g3" in (tmp_path / "kept.dropped.jsonl").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--retriever", "dense"],
            "retriever 'dense': expected bm25, dense:MODEL or fusion:MODEL",
        ),
        (
            ["--retriever", "bm25", "--percentile", "25"],
            "--percentile cuts on the teacher's scores",
        ),
    ],
)
def test_bad_filter_options_exit_2_with_one_line(
    synthetic, tiny_collection, tmp_path, extra, message
):
    from typer.testing import CliRunner

    from twotower.cli.main import app

    path, _, _ = synthetic
    result = CliRunner().invoke(
        app,
        [
            "filter",
            str(path),
            "--data",
            str(tiny_collection),
            "-o",
            str(tmp_path / "k.jsonl"),
            *extra,
        ],
    )
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "k.jsonl").exists()
