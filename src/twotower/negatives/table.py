"""The negatives table (anchor id → negative ids) and the one random-draw policy.

Mining produces a :class:`NegativesTable`; training rows draw from it when read
(``twotower.training.rows``), and a refresher publishes new ones. Every random draw of negatives
uses :func:`rng_for`: a generator per anchor, independent of every other anchor and of order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["documents", "queries"]
# The JSONL field naming the anchor of a row: negative documents hang off a query,
# negative queries (DANCE) off a document.
ANCHOR_FIELD: dict[str, str] = {"documents": "query_id", "queries": "doc_id"}


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from strings and ints, the same on every machine and Python run."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return int.from_bytes(digest.digest(), "little")


def rng_for(seed: int, anchor_id: str, *extra: object) -> np.random.Generator:
    """The random generator of one anchor: independent of every other anchor and of order."""
    return np.random.default_rng(stable_seed(seed, anchor_id, *extra))


@dataclass
class NegativesTable:
    """``negatives[anchor] = [negative ids]`` (best-ranked first), with ranks and positives.

    ``kind="documents"``: anchors are query ids, negatives document ids.
    ``kind="queries"``: anchors are document ids, negatives query ids (DANCE's hard negative queries).
    ``ranks[anchor][i]`` is the 1-based rank of ``negatives[anchor][i]`` in the mining retriever's
    ranking (positives included in the count); ``positives[anchor]`` the anchor's positives.
    A plain object: the data pipeline may replace it between batches.
    """

    negatives: dict[str, list[str]]
    ranks: dict[str, list[int]] = field(default_factory=dict)
    positives: dict[str, list[str]] = field(default_factory=dict)
    kind: Kind = "documents"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ANCHOR_FIELD:
            raise ValueError(f"kind must be 'documents' or 'queries', got {self.kind!r}")

    def __len__(self) -> int:
        return len(self.negatives)

    def __contains__(self, anchor_id: object) -> bool:
        return anchor_id in self.negatives

    def __getitem__(self, anchor_id: str) -> list[str]:
        return self.negatives[anchor_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.negatives)

    def get(self, anchor_id: str, default: list[str] | None = None) -> list[str]:
        return self.negatives.get(anchor_id, [] if default is None else default)

    @property
    def anchor_field(self) -> str:
        return ANCHOR_FIELD[self.kind]

    def total(self) -> int:
        return sum(len(v) for v in self.negatives.values())

    def to_rows(self) -> Iterator[dict[str, Any]]:
        for anchor, negatives in self.negatives.items():
            row: dict[str, Any] = {
                self.anchor_field: anchor,
                "positive_ids": list(self.positives.get(anchor, [])),
                "negative_ids": list(negatives),
            }
            if anchor in self.ranks:
                row["negative_ranks"] = list(self.ranks[anchor])
            yield row
