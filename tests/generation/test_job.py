"""The generation job: lines the synthetic-queries loader reads, drops with reasons, resume."""

import json

import pytest

from tests.conftest import DOCS
from twotower.data import load_corpus, load_synthetic_queries
from twotower.errors import ConfigError, InputError
from twotower.generation import (
    Generator,
    ICTGenerator,
    PromptBuilder,
    SamplingSettings,
    dropped_path,
    generate_queries,
    query_id,
    select_documents,
    split_sentences,
)

CORPUS = {d["_id"]: f"{d['title']} {d['text']}".strip() for d in DOCS}
IDS = list(CORPUS)


class Scripted(Generator):
    """Writes "topic of DOC sample I" (or what ``answers`` says for a doc), counting its calls;
    raises after ``fail_after`` batches, as a kill would stop it."""

    kind = "scripted"

    def __init__(self, *, fail_after=None, answers=None, batch_size=4):
        super().__init__(name="scripted", batch_size=batch_size)
        self.prompts = PromptBuilder()  # a prompted generator: its lines record the version
        self.fail_after = fail_after
        self.answers = answers or {}
        self.batches = 0
        self.seen = []

    def generate(self, tasks):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("killed")
        self.batches += 1
        self.seen += [t.key for t in tasks]
        self.generated_tokens += 5 * len(tasks)
        return [
            self.answers.get(t.doc_id, f"{t.query_type} about {t.doc_id} number {t.sample}")
            for t in tasks
        ]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_carry_everything_and_load_as_synthetic_queries(tmp_path, tiny_collection):
    out = tmp_path / "gen.jsonl"
    report = generate_queries(CORPUS, IDS, "questions,claims", 2, Scripted(), out, progress=False)
    assert report.written == 24 and report.tasks == 24 and report.dropped_total == 0
    assert report.written_by_type == {"questions": 12, "claims": 12}
    assert report.generated_tokens == 120 and report.tokens_per_second > 0
    first = lines(out)[0]
    assert first["query"] == "questions about d1 number 0"
    assert first["query_id"] == query_id("d1", "questions", 0) == "gen-d1-questions-0"
    assert first["type"] == "questions" and first["doc_id"] == "d1" and first["sample"] == 0
    assert first["generator"] == {"kind": "scripted", "name": "scripted"}
    assert first["prompt_version"] == "v1"
    assert first["sampling"] == {"temperature": 0.8, "top_p": 1.0, "max_new_tokens": 50, "seed": 0}
    collection, types = load_synthetic_queries(out, load_corpus(tiny_collection))
    assert types == {"questions": 12, "claims": 12}
    assert collection.qrels["gen-d3-claims-1"] == {"d3": 1}


def test_dropped_completions_go_to_the_side_file_with_reasons(tmp_path):
    out = tmp_path / "gen.jsonl"
    answers = {"d2": "", "d4": "Passage: Python is a programming language"}
    corpus = {**CORPUS, "d6": "   "}
    report = generate_queries(
        corpus, IDS, ["questions"], 1, Scripted(answers=answers), out, progress=False
    )
    assert report.written == 3
    assert report.dropped == {"empty": 1, "prompt_echo": 1, "empty_passage": 1}
    assert report.dropped_by_type == {
        "questions": {"empty": 1, "prompt_echo": 1, "empty_passage": 1}
    }
    side = lines(dropped_path(out))
    assert dropped_path(out).name == "gen.dropped.jsonl"
    assert {(d["doc_id"], d["reason"]) for d in side} == {
        ("d2", "empty"),
        ("d4", "prompt_echo"),
        ("d6", "empty_passage"),
    }
    assert side[1]["raw"] == answers["d4"]
    # A re-run has nothing left to do: kept and dropped tasks are both done.
    again = Scripted()
    report = generate_queries(corpus, IDS, ["questions"], 1, again, out, progress=False)
    assert report.skipped_done == 6 and report.written == 0 and again.batches == 0


def test_resume_after_a_kill_with_a_truncated_last_line(tmp_path):
    out = tmp_path / "gen.jsonl"
    with pytest.raises(RuntimeError, match="killed"):
        generate_queries(
            CORPUS, IDS, ["questions", "titles"], 2, Scripted(fail_after=2), out, progress=False
        )
    assert len(lines(out)) == 8  # two batches of 4, flushed as each finished
    with out.open("a") as handle:  # a kill in the middle of writing a line
        handle.write('{"query": "half a li')
    second = Scripted()
    report = generate_queries(CORPUS, IDS, ["questions", "titles"], 2, second, out, progress=False)
    assert report.skipped_done == 8 and report.written == 16 and len(second.seen) == 16
    written = lines(out)
    ids = [w["query_id"] for w in written]
    assert len(ids) == len(set(ids)) == 24
    assert {(w["doc_id"], w["type"], w["sample"]) for w in written} == {
        (d, t, i) for d in IDS for t in ("questions", "titles") for i in range(2)
    }


@pytest.mark.parametrize("damage", ["not JSON", "flipped letter", "checksum lost"])
def test_a_damaged_line_inside_the_file_is_moved_aside_and_generated_again(
    tmp_path, damage, caplog
):
    out = tmp_path / "gen.jsonl"
    generate_queries(CORPUS, IDS[:3], ["questions"], 1, Scripted(), out, progress=False)
    text = out.read_text().splitlines()
    original = text[1]
    if damage == "not JSON":
        text[1] = "{broken" + original[7:]
    elif damage == "flipped letter":  # still valid JSON: only the checksum tells
        text[1] = original.replace("about d2", "about d3")
    else:
        row = json.loads(original)
        del row["checksum"]
        text[1] = json.dumps(row)
    out.write_text("\n".join(text) + "\n")
    again = Scripted()
    with caplog.at_level("WARNING"):
        report = generate_queries(CORPUS, IDS[:3], ["questions"], 1, again, out, progress=False)
    assert "gen.jsonl: 1 damaged line(s) (line 2" in caplog.text
    assert report.skipped_done == 2 and again.seen == [("d2", "questions", 0)]
    assert [w["query"] for w in lines(out)] == [
        "questions about d1 number 0",
        "questions about d3 number 0",
        "questions about d2 number 0",
    ]
    assert (tmp_path / "gen.damaged.jsonl").read_text() == text[1] + "\n"  # kept, not lost


def test_a_file_without_checksums_is_not_resumed_and_left_alone(tmp_path):
    out = tmp_path / "gen.jsonl"
    generate_queries(CORPUS, IDS[:2], ["questions"], 1, Scripted(), out, progress=False)
    rows = [{k: v for k, v in row.items() if k != "checksum"} for row in lines(out)]
    out.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    before = out.read_bytes()
    with pytest.raises(InputError, match=r"gen.jsonl:1: no line carries a checksum"):
        generate_queries(CORPUS, IDS[:2], ["questions"], 1, Scripted(), out, progress=False)
    assert out.read_bytes() == before  # a file twotower generate did not write is left alone


def test_resuming_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "gen.jsonl"
    generate_queries(CORPUS, IDS[:2], ["questions"], 1, Scripted(), out, progress=False)
    with pytest.raises(ConfigError, match="other settings .*sampling"):
        generate_queries(
            CORPUS,
            IDS,
            ["questions"],
            1,
            Scripted(),
            out,
            sampling=SamplingSettings(temperature=0.3),
            progress=False,
        )


def test_types_are_checked_against_the_generator(tmp_path):
    out = tmp_path / "gen.jsonl"
    with pytest.raises(ConfigError, match="needs the query types"):
        generate_queries(CORPUS, IDS, None, 1, Scripted(), out, progress=False)
    with pytest.raises(ConfigError, match="did you mean 'titles'"):
        generate_queries(CORPUS, IDS, ["titels"], 1, Scripted(), out, progress=False)
    with pytest.raises(ConfigError, match="type 'ict' only"):
        generate_queries(CORPUS, IDS, ["questions"], 1, ICTGenerator(), out, progress=False)
    report = generate_queries(CORPUS, IDS, None, 1, ICTGenerator(), out, progress=False)
    assert report.written == 6 and report.written_by_type == {"ict": 6}
    assert lines(out)[0]["prompt_version"] is None
    with pytest.raises(ConfigError, match="not in the corpus"):
        generate_queries(CORPUS, ["d9"], None, 1, ICTGenerator(), out, progress=False)


def test_document_selection_is_first_n_or_a_seeded_sample_in_corpus_order():
    ids = [f"d{i}" for i in range(100)]
    assert select_documents(ids) == ids and select_documents(ids, limit=3) == ["d0", "d1", "d2"]
    sample = select_documents(ids, sample=10, seed=1)
    assert sample == select_documents(ids, sample=10, seed=1) and len(sample) == 10
    assert sample == sorted(sample, key=ids.index)
    assert sample != select_documents(ids, sample=10, seed=2)
    assert select_documents(ids, sample=500) == ids
    with pytest.raises(ConfigError, match="give one"):
        select_documents(ids, limit=3, sample=3)


def test_ict_lines_carry_the_passage_without_their_sentence(tmp_path):
    corpus = {"a": "Tea is brewed from leaves. It contains caffeine. Green tea is not oxidised."}
    out = tmp_path / "ict.jsonl"
    generate_queries(corpus, ["a"], None, 2, ICTGenerator(), out, progress=False)
    sentences = split_sentences(corpus["a"])
    for row in lines(out):
        assert row["query"] in sentences
        assert row["positive"] == " ".join(s for s in sentences if s != row["query"])
    assert len({row["query"] for row in lines(out)}) == 2
