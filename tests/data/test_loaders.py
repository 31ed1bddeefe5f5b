import json

import pytest

from tests.conftest import DOCS, write_collection
from twotower.data import Corpus, load_collection, load_qrels, load_queries
from twotower.errors import InputError, ResolutionError


def test_loads_collection(tiny_collection):
    c = load_collection(tiny_collection)
    assert c.corpus.ids == [d["_id"] for d in DOCS]
    assert c.corpus.text_of("d1") == "Cats Cats are small domesticated felines that purr."
    assert (
        c.corpus.text_of("d6") == "Coffee beans are roasted seeds of the coffee plant."
    )  # no title
    assert c.qrels == {"q1": {"d1": 1}, "q2": {"d3": 2, "d4": 1}, "q3": {"d6": 1}}
    assert c.judged_query_ids == ["q1", "q2", "q3"]
    assert c.positives("q2") == {"d3", "d4"}
    assert c.warnings == []


def test_fingerprint_depends_on_content(tmp_path):
    a = Corpus.load(write_collection(tmp_path / "a") / "corpus.jsonl")
    docs = [dict(d) for d in DOCS]
    docs[0]["text"] += "!"
    b = Corpus.load(write_collection(tmp_path / "b", docs=docs) / "corpus.jsonl")
    assert a.fingerprint != b.fingerprint
    assert (
        a.fingerprint == Corpus.load(write_collection(tmp_path / "c") / "corpus.jsonl").fingerprint
    )


def test_qrels_without_header_lf_and_trec_four_columns(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("q1\td1\t1\nq1\td2\t0\n")
    assert load_qrels(path) == {"q1": {"d1": 1, "d2": 0}}
    path.write_text("q1 0 d1 3\n")
    assert load_qrels(path) == {"q1": {"d1": 3}}


def test_ids_written_as_numbers_are_strings(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": 7, "text": "seven"}\n')
    assert load_queries(path) == {"7": "seven"}


def test_empty_documents_are_kept_and_counted(tmp_path):
    docs = DOCS + [{"_id": "empty", "title": "", "text": ""}]
    c = load_collection(write_collection(tmp_path / "e", docs=docs))
    assert "empty" in c.corpus.index
    assert c.corpus.empty_documents == 1
    assert any("1 documents have empty text" in w for w in c.warnings)


def test_unknown_ids_in_qrels_are_counted_not_fatal(tmp_path):
    qrels = "q1\td1\t1\nq1\tnope\t1\nghost\td2\t1\n"
    c = load_collection(write_collection(tmp_path / "u", qrels=qrels))
    assert any("1 query ids not in queries.jsonl" in w for w in c.warnings)
    assert any("1 corpus ids not in corpus.jsonl" in w for w in c.warnings)
    assert c.judged_query_ids == ["q1"]


# --- bad input: each error names the file, the line and the field ---------------------------


def test_malformed_json_line(tmp_path):
    root = write_collection(tmp_path / "m")
    with (root / "corpus.jsonl").open("a") as f:
        f.write('{"_id": "d7", "text": "unterminated\n')
    with pytest.raises(InputError, match=r"corpus\.jsonl:7: malformed JSON"):
        load_collection(root)


def test_missing_id_field(tmp_path):
    root = write_collection(tmp_path / "m", docs=DOCS + [{"title": "x", "text": "no id"}])
    with pytest.raises(InputError, match=r"corpus\.jsonl:7 field '_id': missing required field"):
        load_collection(root)


def test_missing_text_field(tmp_path):
    root = write_collection(tmp_path / "m", queries=[{"_id": "q1", "txt": "typo"}])
    with pytest.raises(InputError, match=r"queries\.jsonl:1 field 'text': missing required field"):
        load_collection(root)


def test_duplicate_document_id(tmp_path):
    root = write_collection(tmp_path / "m", docs=DOCS + [DOCS[1]])
    with pytest.raises(
        InputError, match=r"corpus\.jsonl:7 field '_id': duplicate id 'd2' \(first on line 2\)"
    ):
        load_collection(root)


def test_duplicate_query_id(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text(
        json.dumps({"_id": "a", "text": "x"}) + "\n" + json.dumps({"_id": "a", "text": "y"}) + "\n"
    )
    with pytest.raises(
        InputError, match=r"queries\.jsonl:2 field '_id': duplicate id 'a' \(first on line 1\)"
    ):
        load_queries(path)


def test_qrels_non_integer_score(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n")
    with pytest.raises(
        InputError, match=r"test\.tsv:3 field 'score': score 'high' is not an integer"
    ):
        load_qrels(path)


def test_qrels_wrong_column_count(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("q1\td1\t1\nq1\td2\n")
    with pytest.raises(
        InputError, match=r"test\.tsv:2: expected 3 tab-separated columns .* found 2"
    ):
        load_qrels(path)


def test_missing_split_names_available_ones(tiny_collection):
    with pytest.raises(InputError, match=r"no qrels for split 'dev' \(available: test\)"):
        load_collection(tiny_collection, split="dev")


def test_unknown_collection_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResolutionError) as info:
        load_collection("nfcorpus", data_dir=tmp_path / "mine")
    message = str(info.value)
    assert "collection 'nfcorpus' not found in" in message and str(tmp_path / "mine") in message
    assert "--data-dir" in message and "\n" not in message


def test_name_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_collection(tmp_path / "env" / "tiny")
    write_collection(tmp_path / "data" / "tiny")
    monkeypatch.setenv("TWOTOWER_DATA", str(tmp_path / "env"))
    assert load_collection("tiny").path == (tmp_path / "env" / "tiny").resolve()
    monkeypatch.delenv("TWOTOWER_DATA")
    assert load_collection("tiny").path == (tmp_path / "data" / "tiny").resolve()


def test_invalid_utf8_names_line_and_column_and_a_bom_is_fine(tmp_path):
    from twotower.errors import ConfigError
    from twotower.training.recipe import load_recipe

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b'{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "caf\xe9"}\n')
    with pytest.raises(
        InputError, match=r"corpus.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 27\)"
    ):
        Corpus.load(corpus)
    corpus.write_bytes(b'\xef\xbb\xbf{"_id": "d1", "text": "caf\xc3\xa9"}\r\n')
    assert Corpus.load(corpus).text_of("d1") == "café"
    qrels = tmp_path / "test.tsv"
    qrels.write_bytes(b"q1\td1\t1\nq\xff2\td1\t1\n")
    with pytest.raises(InputError, match=r"test.tsv:2: not valid UTF-8 \(byte 0xff at column 2\)"):
        load_qrels(qrels)
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"\xef\xbb\xbfname: r\nloss: [{loss: contrastive}]\n")
    assert load_recipe(recipe).name == "r"
    recipe.write_bytes(b"\xef\xbb\xbfname: r\ndescription: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"r.yaml:2: not valid UTF-8 \(byte 0xe9\)"):
        load_recipe(recipe)


def test_a_bad_loss_entry_names_its_own_line(tmp_path):
    from twotower.errors import ConfigError
    from twotower.training.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nloss:\n  - {loss: contrastive}\n  - {loss: margin_mse, dual_wieght: 1}\n"
    )
    with pytest.raises(ConfigError, match=r"r\.yaml:4: loss\[1\] \(margin_mse\): unknown key"):
        load_recipe(recipe)
    recipe.write_text("name: r\noptim: {learnig_rate: 1}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:2: .*did you mean 'optim\.learning_rate'"):
        load_recipe(recipe)
