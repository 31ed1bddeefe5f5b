"""A loaded collection (corpus, queries, qrels of one split) with its consistency report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from twotower.data.beir import Corpus, Qrels, load_qrels, load_queries
from twotower.data.locate import locate_collection
from twotower.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class Collection:
    name: str
    path: Path
    split: str
    corpus: Corpus
    queries: dict[str, str]
    qrels: Qrels
    warnings: list[str] = field(default_factory=list)

    @property
    def judged_query_ids(self) -> list[str]:
        """Queries with at least one judgement that exist in queries.jsonl, in file order."""
        return [qid for qid in self.queries if qid in self.qrels]

    def positives(self, query_id: str) -> set[str]:
        return {d for d, rel in self.qrels.get(query_id, {}).items() if rel > 0}

    def judging_queries(self) -> dict[str, dict[str, int]]:
        """The qrels inverted: document id → {query id: grade} of the queries (in queries.jsonl)
        that judge it relevant, for every such document of the corpus, in qrels order; DANCE's
        dual task and negative queries read it."""
        out: dict[str, dict[str, int]] = {}
        index = self.corpus.index
        for query_id, judged in self.qrels.items():
            if query_id not in self.queries:
                continue
            for doc_id, grade in judged.items():
                if grade > 0 and doc_id in index:
                    out.setdefault(doc_id, {})[query_id] = grade
        return out

    def ids_are_shared(self) -> bool:
        """True when queries are documents of the corpus (ArguAna): same id and same text.

        Numeric ids that merely coincide (Cranfield, CISI) do not count.
        """
        shared = [qid for qid in self.queries if qid in self.corpus.index]
        if not shared:
            return False
        sample = shared[:200]
        same = 0
        for qid in sample:
            query = self.queries[qid].lower()
            doc = self.corpus.text_of(qid).lower()
            same += bool(query) and (query in doc or doc in query)
        return same >= 0.5 * len(sample)


def available_splits(path: Path) -> list[str]:
    qrels_dir = path / "qrels"
    return sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []


def load_collection(
    name_or_path: str | Path, split: str = "test", data_dir: str | Path | None = None
) -> Collection:
    """Load corpus, queries and the qrels of ``split``; unknown ids in qrels are counted, not fatal."""
    path = locate_collection(name_or_path, data_dir)
    qrels_path = path / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = available_splits(path)
        raise InputError(
            f"no qrels for split '{split}' (available: {', '.join(splits) or 'none'})",
            path=qrels_path,
        )
    corpus = Corpus.load(path / "corpus.jsonl")
    queries = load_queries(path / "queries.jsonl")
    qrels = load_qrels(qrels_path)
    collection = Collection(path.name, path, split, corpus, queries, qrels)
    collection.warnings = check_consistency(collection, qrels_path)
    for message in collection.warnings:
        log.warning(message)
    return collection


def load_corpus(name_or_path: str | Path, data_dir: str | Path | None = None) -> Collection:
    """A collection with its corpus only (no queries, no qrels): for training queries that come
    from elsewhere, such as an LLM's synthetic queries."""
    path = locate_collection(name_or_path, data_dir)
    return Collection(path.name, path, "corpus", Corpus.load(path / "corpus.jsonl"), {}, {})


def check_consistency(collection: Collection, qrels_path: Path) -> list[str]:
    warnings = []
    missing_queries = [q for q in collection.qrels if q not in collection.queries]
    missing_docs = sorted(
        {
            d
            for judged in collection.qrels.values()
            for d in judged
            if d not in collection.corpus.index
        }
    )
    if missing_queries:
        warnings.append(
            f"{qrels_path}: {len(missing_queries)} query ids not in queries.jsonl (ignored), e.g. {missing_queries[:3]}"
        )
    if missing_docs:
        warnings.append(
            f"{qrels_path}: {len(missing_docs)} corpus ids not in corpus.jsonl (they can never be retrieved), e.g. {missing_docs[:3]}"
        )
    if collection.corpus.empty_documents:
        warnings.append(
            f"{collection.corpus.path}: {collection.corpus.empty_documents} documents have empty text (kept)"
        )
    return warnings
