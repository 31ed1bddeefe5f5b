"""Cleaning raw completions and dropping junk, one test per reason."""

import pytest

from twotower.errors import ConfigError
from twotower.generation import REASONS, JunkFilter, clean_completion

PASSAGE = (
    "Statins lower low-density lipoprotein cholesterol by inhibiting HMG-CoA reductase, the "
    "rate-limiting enzyme of cholesterol synthesis in the liver, and reduce vascular events."
)
INSTRUCTION = (
    "Read the target passage carefully to understand its main idea. Then, write a natural-sounding "
    "question based on the passage."
)
# What a prompted generator gives the filter: instructions and the few-shot example queries.
PROMPT_TEXTS = [
    INSTRUCTION,
    "Measles outbreaks follow vaccination coverage dropping below the herd immunity threshold.",
    "why does sourdough taste sour",
]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  Question: How do statins work?  ", "How do statins work?"),
        ('"How do statins work?"', "How do statins work?"),
        ("**Query:** statin mechanism", "statin mechanism"),
        ("1. What do statins inhibit?\n2. Why?", "What do statins inhibit?"),
        (
            "\n\nClaim:\nStatins inhibit HMG-CoA reductase.\nPassage: next",
            "Statins inhibit HMG-CoA reductase.",
        ),
        ("Keywords/Phrases: statins, LDL, liver", "statins, LDL, liver"),
        ("Sure! Here is a question: Do statins lower LDL?", "Do statins lower LDL?"),
        ("Query-based retrieval of statin trials", "Query-based retrieval of statin trials"),
        ('"Casablanca" director', '"Casablanca" director'),
        ("Title - Statins and the Liver", "Statins and the Liver"),
        ("The claim is: Statins act in the liver.", "Statins act in the liver."),
        (
            "Here is a concise and accurate claim based on the given passage:\n\nStatins work.",
            "Statins work.",
        ),
        ("A question of dose: how much statin?", "A question of dose: how much statin?"),
    ],
)
def test_cleaning(raw, clean):
    assert clean_completion(raw) == clean


def check(raw, **options):
    return JunkFilter().check(raw, PASSAGE, **options)


def test_a_good_query_is_kept_cleaned():
    verdict = check("Question: How do statins reduce vascular risk?")
    assert verdict.kept and verdict.text == "How do statins reduce vascular risk?"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   \n Question: \n", "empty"),
        ('""', "empty"),
        (" ".join(["word"] * 3 + [f"w{i}" for i in range(40)]), "too_long"),
        (
            "How do statins lower low-density lipoprotein cholesterol by inhibiting HMG-CoA "
            "reductase, the rate-limiting enzyme?",
            "copies_passage",
        ),
        ("statins statins statins statins", "repeated_tokens"),
        (
            "cholesterol liver cholesterol liver cholesterol liver cholesterol liver",
            "repeated_tokens",
        ),
        ("What lowers LDL? Passage: The Panama Canal opened in 1914", "prompt_echo"),
        ("Target Passage:", "prompt_echo"),
        (
            "Read the target passage carefully to understand its main idea and answer",
            "prompt_echo",
        ),
        ("Measles outbreaks follow vaccination coverage dropping below this level", "prompt_echo"),
        ("why does sourdough taste sour", "prompt_echo"),
    ],
)
def test_each_reason(raw, reason):
    verdict = check(raw, instructions=PROMPT_TEXTS)
    assert reason in REASONS and verdict.reason == reason and not verdict.kept


def test_generators_that_copy_by_design_are_not_dropped_for_it():
    span = " ".join(PASSAGE.split()[:14])
    assert check(span).reason == "copies_passage"
    assert check(span, copies_allowed=True).kept


def test_limits_are_settings():
    long = " ".join(f"w{i}" for i in range(10))
    assert not JunkFilter(max_words=9).check(long, PASSAGE).kept
    assert JunkFilter(max_words=10).check(long, PASSAGE).kept
    eleven = " ".join(PASSAGE.split()[:11])
    assert JunkFilter().check(eleven, PASSAGE).kept  # 11 shared words: under the default 12
    assert JunkFilter(copy_span=11).check(eleven, PASSAGE).reason == "copies_passage"
    with pytest.raises(ConfigError, match="max_words"):
        JunkFilter(max_words=0)
