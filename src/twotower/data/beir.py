"""BEIR-layout collections: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from twotower.data.jsonl import iter_jsonl, iter_lines, require_string
from twotower.errors import InputError

log = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """What is indexed and encoded: title and body, as BEIR does."""
        return f"{self.title} {self.text}".strip() if self.title else self.text.strip()


def iter_corpus(path: str | Path) -> Iterator[Document]:
    """Stream documents from a corpus.jsonl; no duplicate check (see :class:`Corpus`)."""
    path = Path(path)
    for line, obj in iter_jsonl(path):
        doc_id = require_string(obj, "_id", path, line)
        if not doc_id:
            raise InputError("empty id", path=path, line=line, field="_id")
        if "text" not in obj:
            raise InputError("missing required field", path=path, line=line, field="text")
        yield Document(
            doc_id,
            require_string(obj, "title", path, line, optional=True),
            require_string(obj, "text", path, line),
        )


@dataclass
class Corpus:
    """The documents of a collection, held once: ids and the indexed text (title + body).

    Documents stream from the file into these two lists; nothing else keeps a copy (BM25 and
    the encoder read ``texts`` in place).

    ``fingerprint`` is a SHA-256 over ids and texts, used to key embedding caches.
    """

    path: Path | None
    ids: list[str]
    texts: list[str]
    fingerprint: str
    empty_documents: int = 0
    _index: dict[str, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {doc_id: i for i, doc_id in enumerate(self.ids)}
        return self._index

    def text_of(self, doc_id: str) -> str:
        return self.texts[self.index[doc_id]]

    @classmethod
    def from_documents(
        cls, documents: Iterator[Document] | list[Document], path: Path | None = None
    ) -> Corpus:
        ids: list[str] = []
        texts: list[str] = []
        seen: dict[str, int] = {}
        digest = hashlib.sha256()
        empty = 0
        for position, doc in enumerate(documents, start=1):
            if doc.id in seen:
                raise InputError(
                    f"duplicate document id '{doc.id}' (first seen in document {seen[doc.id]})",
                    path=path,
                    line=position,
                    field="_id",
                )
            seen[doc.id] = position
            text = doc.full_text
            if not text:
                empty += 1
            ids.append(doc.id)
            texts.append(text)
            digest.update(doc.id.encode())
            digest.update(b"\0")
            digest.update(text.encode())
            digest.update(b"\0")
        if not ids:
            raise InputError("the corpus has no documents", path=path)
        corpus = cls(path, ids, texts, digest.hexdigest(), empty)
        corpus._index = {doc_id: i for i, doc_id in enumerate(ids)}
        return corpus

    @classmethod
    def load(cls, path: str | Path) -> Corpus:
        # Line numbers in duplicate errors are document positions; blank lines are
        # rare in BEIR files, so re-read to report the true line on error.
        path = Path(path)
        try:
            return cls.from_documents(iter_corpus(path), path)
        except InputError as exc:
            if exc.field == "_id" and exc.reason.startswith("duplicate"):
                raise _locate_duplicate(path, "_id") from None
            raise


def _locate_duplicate(path: Path, id_field: str) -> InputError:
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        key = str(obj.get(id_field))
        if key in seen:
            return InputError(
                f"duplicate id '{key}' (first on line {seen[key]})",
                path=path,
                line=line,
                field=id_field,
            )
        seen[key] = line
    return InputError("duplicate id", path=path, field=id_field)


def load_queries(path: str | Path) -> dict[str, str]:
    """Query id → text. Empty query texts are kept (and warned about)."""
    path = Path(path)
    queries: dict[str, str] = {}
    lines: dict[str, int] = {}
    empty = 0
    for line, obj in iter_jsonl(path):
        query_id = require_string(obj, "_id", path, line)
        if not query_id:
            raise InputError("empty id", path=path, line=line, field="_id")
        text = require_string(obj, "text", path, line).strip()
        if query_id in queries:
            raise InputError(
                f"duplicate id '{query_id}' (first on line {lines[query_id]})",
                path=path,
                line=line,
                field="_id",
            )
        queries[query_id] = text
        lines[query_id] = line
        empty += not text
    if empty:
        log.warning("%s: %d queries have empty text", path, empty)
    return queries


def load_qrels(path: str | Path) -> Qrels:
    """Read BEIR qrels (``query-id<TAB>corpus-id<TAB>score``; header optional, CRLF tolerated).

    TREC's four-column form (``qid iteration docid score``) is accepted too. Scores are
    graded integers; a row naming the same pair twice is an error.
    """
    path = Path(path)
    qrels: Qrels = {}
    for line_number, line in iter_lines(path):
        if not line.strip():
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) == 4:
            query_id, _, doc_id, score_text = cols
        elif len(cols) == 3:
            query_id, doc_id, score_text = cols
        else:
            raise InputError(
                f"expected 3 tab-separated columns (query-id, corpus-id, score), found {len(cols)}",
                path=path,
                line=line_number,
            )
        query_id, doc_id, score_text = query_id.strip(), doc_id.strip(), score_text.strip()
        if line_number == 1 and not _is_int(score_text):
            continue  # header row
        if not _is_int(score_text):
            raise InputError(
                f"score '{score_text}' is not an integer",
                path=path,
                line=line_number,
                field="score",
            )
        if not query_id or not doc_id:
            raise InputError("empty query or corpus id", path=path, line=line_number)
        judged = qrels.setdefault(query_id, {})
        if doc_id in judged:
            raise InputError(
                f"pair ({query_id}, {doc_id}) judged twice", path=path, line=line_number
            )
        judged[doc_id] = int(score_text)
    if not qrels:
        raise InputError("no judgements found", path=path)
    return qrels


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
