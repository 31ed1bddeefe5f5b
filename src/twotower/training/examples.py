"""Training examples: (query, positive) pairs, from a collection's qrels or a JSONL file.

Their hard negatives, negative queries and teacher scores are drawn when a row is read
(:mod:`twotower.training.rows`); a triples file's own negatives travel with its examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twotower.data.collection import Collection, load_collection, load_corpus
from twotower.data.jsonl import iter_jsonl, require_string
from twotower.data.synthetic import load_synthetic_queries
from twotower.errors import InputError

if TYPE_CHECKING:  # the recipe module needs no examples; only the type is wanted here
    from twotower.training.recipe_sections import TrainDataConfig

NEGATIVE_QUERY_COLUMN = "negative_query_"


@dataclass
class Example:
    query: str
    positive: str
    # A triples file's negatives (texts), in file order.
    negatives: list[str] = field(default_factory=list)
    query_id: str | None = None
    positive_id: str | None = None


def examples_from_collection(
    collection: Collection, max_examples: int | None = None
) -> list[Example]:
    """One example per (judged query, positive document) pair, in qrels order."""
    examples = []
    for query_id in collection.judged_query_ids:
        for doc_id, grade in collection.qrels[query_id].items():
            if grade > 0 and doc_id in collection.corpus.index:
                examples.append(
                    Example(
                        collection.queries[query_id],
                        collection.corpus.text_of(doc_id),
                        query_id=query_id,
                        positive_id=doc_id,
                    )
                )
    if not examples:
        raise InputError(
            f"split '{collection.split}' has no (query, positive document) pair",
            path=collection.path,
        )
    return examples[:max_examples] if max_examples else examples


def examples_from_jsonl(path: str | Path, max_examples: int | None = None) -> list[Example]:
    """Pairs or triples as texts: ``{"query": ..., "positive": ..., "negatives": [...]}``."""
    path = Path(path)
    examples = []
    for line, obj in iter_jsonl(path):
        negatives = obj.get("negatives", [])
        if isinstance(negatives, str):
            negatives = [negatives]
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise InputError("expected a list of strings", path=path, line=line, field="negatives")
        query = require_string(obj, "query", path, line)
        positive = require_string(obj, "positive", path, line)
        for name, text in (("query", query), ("positive", positive)):
            if not text.strip():
                raise InputError("empty text", path=path, line=line, field=name)
        examples.append(Example(query, positive, list(negatives), query_id=obj.get("query_id")))
        if max_examples and len(examples) >= max_examples:
            break
    if not examples:
        raise InputError("no training examples", path=path)
    return examples


def training_collection(train: TrainDataConfig, info: dict[str, Any] | None = None) -> Collection:
    """The collection whose queries train (a recipe's ``train`` section): ``train.data``'s
    split, its corpus with synthetic queries, or both."""
    assert train.data is not None  # TrainDataConfig: without it, train.pairs (read elsewhere)
    if not train.synthetic_queries:
        return load_collection(train.data, train.split)
    base = (
        load_collection(train.data, train.split) if train.include_split else load_corpus(train.data)
    )
    collection, types = load_synthetic_queries(
        train.synthetic_queries, base, types=train.query_types, include_split=train.include_split
    )
    if info is not None:
        info["synthetic_queries"] = {
            "file": train.synthetic_queries,
            "types": types,
            "labelled_queries": len(base.queries),
        }
    return collection


def is_query_column(name: str) -> bool:
    """Whether a column of :func:`to_columns` holds queries (anchor, negative_query_*)."""
    return name == "anchor" or name.startswith(NEGATIVE_QUERY_COLUMN)


def query_key(example: Example) -> str:
    """The query's id, or its text where it has none: what teacher scores and rows key on."""
    return example.query_id if example.query_id is not None else example.query


def positive_key(example: Example) -> str:
    """The positive's id, or its text where it has none."""
    return example.positive_id if example.positive_id is not None else example.positive
