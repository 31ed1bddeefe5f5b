"""ICT and cropping: seeded, deterministic, spans of the passage."""

from twotower.generation import (
    CropGenerator,
    GenerationTask,
    ICTGenerator,
    SamplingSettings,
    split_sentences,
)

PASSAGE = (
    "Vitamin D is made in the skin under sunlight. Deficiency is common in winter, as shown by "
    "Smith et al. 2019 in a large cohort. Supplements raise blood levels within weeks. "
    "Whether they prevent fractures in healthy adults is doubtful."
)


def tasks(n=4, doc_id="d1"):
    return [GenerationTask(doc_id, PASSAGE, "ict", i) for i in range(n)]


def test_sentences_survive_abbreviations():
    sentences = split_sentences(PASSAGE)
    assert len(sentences) == 4
    assert (
        sentences[1]
        == "Deficiency is common in winter, as shown by Smith et al. 2019 in a large cohort."
    )
    assert split_sentences("") == [] and split_sentences("No stop at the end") == [
        "No stop at the end"
    ]


def test_ict_queries_are_sentences_distinct_per_sample_and_seeded():
    ict = ICTGenerator()
    queries = ict.generate(tasks())
    sentences = split_sentences(PASSAGE)
    assert set(queries) == set(sentences)  # four samples of four sentences: each once
    assert queries == ICTGenerator().generate(tasks())
    other_seed = ICTGenerator(sampling=SamplingSettings(seed=5)).generate(tasks())
    assert sorted(other_seed) == sorted(queries)
    assert ict.generated_tokens == 0 and ict.copies_passage and ict.fixed_types == ("ict",)


def test_ict_removes_the_sentence_from_the_positive_by_default():
    task = tasks(1)[0]
    ict = ICTGenerator()
    query = ict.generate([task])[0]
    positive = ict.positive(task, query)
    assert query not in positive and len(split_sentences(positive)) == 3
    assert ICTGenerator(remove_sentence=False).positive(task, query) is None
    one = GenerationTask("d2", "Only one sentence here.", "ict", 0)
    assert ict.positive(one, ict.generate([one])[0]) is None  # nothing would be left


def test_crop_spans_are_contiguous_bounded_and_seeded():
    crop = CropGenerator(min_words=5, max_words=8)
    words = PASSAGE.split()
    spans = crop.generate(tasks(20))
    assert spans == CropGenerator(min_words=5, max_words=8).generate(tasks(20))
    assert len(set(spans)) > 1
    for span in spans:
        n = len(span.split())
        assert 5 <= n <= 8
        assert any(words[i : i + n] == span.split() for i in range(len(words) - n + 1))
    short = GenerationTask("d3", "too short", "crop", 0)
    assert crop.generate([short]) == ["too short"]
    assert crop.describe() == {"kind": "crop", "name": "crop", "min_words": 5, "max_words": 8}


def test_a_mix_writes_each_type_as_its_generator_alone(tmp_path):
    """ict+crop: one query of each type per passage and sample, each the same text (and ICT's
    positive) as the single-type generator writes; the job writes both types, in equal counts."""
    import json

    import pytest

    from twotower.errors import ConfigError
    from twotower.generation import MixedGenerator, build_generator, generate_queries

    mix = build_generator("ict+crop")
    assert isinstance(mix, MixedGenerator) and mix.fixed_types == ("ict", "crop")
    assert mix.copies_passage and mix.describe()["name"] == "ict+crop"
    mixed = [GenerationTask("d1", PASSAGE, kind, i) for i in range(2) for kind in ("crop", "ict")]
    alone = {"ict": ICTGenerator(), "crop": CropGenerator()}
    expected = [alone[t.query_type].generate([t])[0] for t in mixed]
    assert mix.generate(mixed) == expected
    ict_task = mixed[1]
    assert mix.positive(ict_task, expected[1]) == alone["ict"].positive(ict_task, expected[1])
    assert mix.positive(mixed[0], expected[0]) is None
    mix.sampling = SamplingSettings(seed=3)  # the job sets the mix's sampling: its parts follow
    assert all(part.sampling.seed == 3 for part in mix.parts.values())

    corpus = {"d1": PASSAGE, "d2": "Green tea is brewed from leaves. It is drunk hot or cold."}
    out = tmp_path / "q.jsonl"
    report = generate_queries(corpus, list(corpus), None, 1, build_generator("ict+crop"), out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["type"] for line in lines) == ["crop", "crop", "ict", "ict"]
    assert report.written == 4
    with pytest.raises(ConfigError, match="'ict', 'crop' only, not questions"):
        generate_queries(corpus, list(corpus), "questions", 1, build_generator("ict+crop"), out)
    assert build_generator("crop+crop").fixed_types == ("crop",)
