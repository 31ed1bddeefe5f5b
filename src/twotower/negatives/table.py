"""The negatives table (anchor id → negative ids) and sampling from it.

Mining produces a :class:`NegativesTable`; training draws ``k`` negatives per example from it
with a :class:`NegativeSampler`. The two are separate so that an ANCE-style refresh can build
a new table while training runs and hand it over with :meth:`NegativeSampler.swap` (or merge
a partial refresh with :meth:`NegativesTable.updated`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
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

    def sample(self, count: int, seed: int = 0) -> NegativesTable:
        """A table with at most ``count`` negatives per anchor, drawn without replacement.

        Deterministic per anchor (the draw depends on ``seed`` and the anchor id only), and
        kept in rank order.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        negatives: dict[str, list[str]] = {}
        ranks: dict[str, list[int]] = {}
        for anchor, pool in self.negatives.items():
            chosen = sorted(sample_positions(len(pool), count, rng_for(seed, anchor)))
            negatives[anchor] = [pool[i] for i in chosen]
            if anchor in self.ranks:
                ranks[anchor] = [self.ranks[anchor][i] for i in chosen]
        return NegativesTable(negatives, ranks, dict(self.positives), self.kind, dict(self.meta))

    def updated(self, fresh: NegativesTable) -> NegativesTable:
        """This table with ``fresh``'s anchors replaced (a partial ANCE refresh); a new object."""
        if fresh.kind != self.kind:
            raise ValueError(f"cannot merge a '{fresh.kind}' table into a '{self.kind}' table")
        negatives = {**self.negatives, **fresh.negatives}
        ranks = {a: r for a, r in self.ranks.items() if a not in fresh.negatives}
        ranks.update(fresh.ranks)
        positives = {**self.positives, **fresh.positives}
        return NegativesTable(negatives, ranks, positives, self.kind, {**self.meta, **fresh.meta})

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


def sample_positions(available: int, count: int, rng: np.random.Generator) -> list[int]:
    """``count`` distinct positions out of ``available`` (all of them when fewer; ``count=0``: all)."""
    if count == 0 or count >= available:
        return list(range(available))
    return rng.choice(available, size=count, replace=False).tolist()


class NegativeSampler:
    """Draws ``k`` negatives for a training example from the current table.

    ``sample(anchor, epoch)`` is deterministic given ``seed``, the anchor and the epoch, so a
    resumed run sees the same negatives. An anchor with fewer than ``k`` negatives gets them
    all, or, with ``pad=True``, repeats drawn with replacement to reach ``k`` (an anchor with
    none gets ``[]``). :meth:`swap` installs a refreshed table atomically.
    """

    def __init__(self, table: NegativesTable, k: int, *, seed: int = 0, pad: bool = False) -> None:
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        self._table = table
        self._lock = threading.Lock()
        self.k = k
        self.seed = seed
        self.pad = pad
        self.version = 0

    @property
    def table(self) -> NegativesTable:
        return self._table

    def swap(self, table: NegativesTable) -> None:
        """Use ``table`` from the next draw on (ANCE: the newest mined negatives)."""
        if table.kind != self._table.kind:
            raise ValueError(f"cannot swap a '{self._table.kind}' table for a '{table.kind}' table")
        with self._lock:
            self._table = table
            self.version += 1

    def sample(self, anchor_id: str, epoch: int = 0) -> list[str]:
        pool: Sequence[str] = self._table.get(anchor_id)
        rng = rng_for(self.seed, anchor_id, epoch)
        if len(pool) > self.k:
            return [pool[i] for i in rng.choice(len(pool), size=self.k, replace=False).tolist()]
        chosen = [pool[i] for i in rng.permutation(len(pool)).tolist()]
        if self.pad and pool and len(chosen) < self.k:
            chosen += [
                pool[i] for i in rng.integers(0, len(pool), size=self.k - len(chosen)).tolist()
            ]
        return chosen

    __call__ = sample
