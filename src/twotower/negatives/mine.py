"""Mining hard negatives: retrieve, take a rank window, drop positives, sample, filter.

Ranks are 1-based positions in the retriever's ranking with the positives still in it (a
window of 10:100 means the documents ranked 10th to 100th; the positives among them are then
removed). Per query, candidates are visited in a random order fixed by ``seed`` and the query
id, and the first ``count`` that survive the optional false-negative filter are kept (a
uniform sample of the surviving candidates); they are written back in rank order. With a
teacher, candidates are scored lazily, in rounds, so only about ``count`` pairs per query are
scored rather than the whole window. DANCE's negative queries
(:mod:`twotower.negatives.queries`) are mined by the same steps, without the filter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container, Iterable, Sequence
from dataclasses import asdict, dataclass

from twotower.data.collection import Collection
from twotower.errors import ConfigError
from twotower.negatives import cache as mining_cache
from twotower.negatives.filtering import Reference, false_negative_mask
from twotower.negatives.retrievers import Retriever
from twotower.negatives.table import Kind, NegativesTable, rng_for
from twotower.teachers.base import Teacher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankWindow:
    """Ranks ``start`` to ``end``, 1-based, both included."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.end:
            raise ConfigError(f"rank window {self.start}:{self.end}: need 1 <= start <= end")

    @classmethod
    def parse(cls, text: str) -> RankWindow:
        """``"10:100"`` (also ``10-100``)."""
        sep = ":" if ":" in text else "-"
        start, _, end = text.partition(sep)
        try:
            ranks = int(start), int(end)
        except ValueError:
            raise ConfigError(
                f"rank window '{text}': expected START:END, e.g. 10:100 (1-based, inclusive)"
            ) from None
        return cls(*ranks)  # outside the try, whose except would replace the window's own error

    def __contains__(self, rank: object) -> bool:
        return isinstance(rank, int) and self.start <= rank <= self.end

    def __str__(self) -> str:
        return f"{self.start}:{self.end}"

    def as_tuple(self) -> tuple[int, int]:
        return self.start, self.end


# The defaults of mining hard negatives, wherever they are mined (a recipe, `twotower mine`).
NEGATIVE_WINDOW = RankWindow(10, 100)
NEGATIVES_PER_QUERY = 8


@dataclass
class MiningStats:
    anchors: int = 0
    negatives: int = 0
    short: int = 0  # anchors left with fewer than `count` negatives
    candidates: int = 0  # window candidates after removing positives
    false_negatives: int = 0  # dropped by the teacher filter
    teacher_pairs: int = 0  # pairs scored by the teacher (cached ones included)
    skipped: int = 0  # queries without a positive in the corpus
    index_recall: float | None = None  # an approximate index's recall against exact search
    seconds: float = 0.0
    cached: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def training_query_ids(collection: Collection) -> list[str]:
    """Judged queries (in queries.jsonl order) with at least one positive that is in the corpus."""
    corpus = collection.corpus.index
    return [
        q for q in collection.judged_query_ids if any(d in corpus for d in collection.positives(q))
    ]


def mine_negatives(
    collection: Collection,
    retriever: Retriever,
    *,
    window: RankWindow = NEGATIVE_WINDOW,
    count: int = NEGATIVES_PER_QUERY,
    seed: int = 0,
    query_ids: Sequence[str] | None = None,
    teacher: Teacher | None = None,
    margin: float | None = None,
    reference: Reference = "max",
    ignore_identical_ids: bool | None = None,
    use_cache: bool = True,
) -> tuple[NegativesTable, MiningStats]:
    """Hard negative documents for each training query → (table, statistics).

    ``count=0`` keeps every candidate of the window. With ``teacher`` and ``margin``, a
    negative is dropped when its teacher score > (teacher score of the positive − margin),
    the positive being the highest-scored of the query's positives (``reference="max"``) or the
    lowest (``"min"``, stricter). The table is cached on disk under a key of every input.
    """
    check_count(count)
    if (teacher is None) != (margin is None):
        raise ConfigError("false-negative filtering needs both a teacher and a margin")
    started = time.perf_counter()
    all_training = training_query_ids(collection)
    if query_ids is None:
        query_ids = all_training
        skipped = len(collection.judged_query_ids) - len(all_training)
    else:
        check_known_queries(collection, query_ids)
        keep = set(all_training)
        skipped = sum(1 for q in query_ids if q not in keep)
        query_ids = [q for q in query_ids if q in keep]
    if ignore_identical_ids is None:
        ignore_identical_ids = collection.ids_are_shared()
    settings = {
        "what": "documents",
        "retriever": retriever.fingerprint,
        "window": str(window),
        "count": count,
        "seed": seed,
        "teacher": f"{teacher.kind}-{teacher.fingerprint}" if teacher else None,
        "margin": margin,
        "reference": reference if teacher else None,
        "ignore_identical_ids": ignore_identical_ids,
    }
    mining = MiningCacheEntry(collection, "documents", query_ids, settings, use_cache, started)
    if mining.cached is not None:
        return mining.cached
    run = retriever.run(
        collection, query_ids, window.end, ignore_identical_ids=ignore_identical_ids
    )
    pools = {
        qid: shuffled_candidates(run.get(qid, {}), window, collection.positives(qid), seed, qid)
        for qid in query_ids
    }
    stats = MiningStats(
        anchors=len(query_ids),
        skipped=skipped,
        candidates=sum(len(p) for p in pools.values()),
        index_recall=retriever.last_recall,
    )
    if teacher is None:
        kept = first_of_each(pools, count)
    else:
        assert margin is not None  # given with the teacher, checked above
        kept = _filter_with_teacher(
            collection, pools, count, teacher, float(margin), reference, stats
        )
    positives = {
        qid: [
            d
            for d, grade in collection.qrels[qid].items()
            if grade > 0 and d in collection.corpus.index
        ]
        for qid in query_ids
    }
    return mining.finish(kept, positives, count, stats)


def check_count(count: int) -> None:
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")


def check_known_queries(collection: Collection, query_ids: Sequence[str]) -> None:
    unknown = [q for q in query_ids if q not in collection.queries]
    if unknown:
        raise ConfigError(f"unknown query id '{unknown[0]}'")


def shuffled_candidates(
    ranked: Iterable[str], window: RankWindow, excluded: Container[str], seed: int, anchor: str
) -> list[tuple[int, str]]:
    """(rank, id) of the window's candidates, less ``excluded``, in the anchor's random order."""
    candidates = [
        (rank, candidate)
        for rank, candidate in enumerate(ranked, start=1)
        if rank in window and candidate not in excluded
    ]
    return [candidates[i] for i in rng_for(seed, anchor).permutation(len(candidates)).tolist()]


def first_of_each(
    pools: dict[str, list[tuple[int, str]]], count: int
) -> dict[str, list[tuple[int, str]]]:
    """The first ``count`` of each shuffled pool (all with ``count=0``): a uniform sample."""
    return {anchor: pool[:count] if count else list(pool) for anchor, pool in pools.items()}


def table_from_kept(
    kept: dict[str, list[tuple[int, str]]],
    positives: dict[str, list[str]],
    kind: Kind = "documents",
    meta: dict | None = None,
) -> NegativesTable:
    """A table of the kept (rank, id) candidates of each anchor, in rank order."""
    negatives: dict[str, list[str]] = {}
    ranks: dict[str, list[int]] = {}
    for anchor, chosen in kept.items():
        chosen = sorted(chosen)
        negatives[anchor] = [candidate for _, candidate in chosen]
        ranks[anchor] = [rank for rank, _ in chosen]
    return NegativesTable(negatives, ranks, positives, kind, meta or {})


class MiningCacheEntry:
    """One mining's cache entry: the cached result if there is one, else :meth:`finish` builds
    the table from the kept candidates and stores it."""

    def __init__(
        self,
        collection: Collection,
        kind: Kind,
        anchors: Sequence[str],
        settings: dict,
        use_cache: bool,
        started: float,
    ) -> None:
        self.kind, self.settings, self.use_cache, self.started = kind, settings, use_cache, started
        self.key = mining_cache.mining_key(collection, anchors, settings)
        self.cached: tuple[NegativesTable, MiningStats] | None = None
        hit = mining_cache.load_cached(self.key, kind) if use_cache else None
        if hit is not None:
            table, stats_json = hit
            table.meta.update(settings=settings, cache_key=self.key)
            seconds = time.perf_counter() - started
            self.cached = table, MiningStats(**{**stats_json, "cached": True, "seconds": seconds})

    def finish(
        self,
        kept: dict[str, list[tuple[int, str]]],
        positives: dict[str, list[str]],
        count: int,
        stats: MiningStats,
    ) -> tuple[NegativesTable, MiningStats]:
        """The table of ``kept`` (rank, id) per anchor, in rank order, and its statistics."""
        meta = {"settings": self.settings, "cache_key": self.key}
        table = table_from_kept(kept, positives, self.kind, meta)
        stats.negatives = table.total()
        stats.short = sum(1 for v in table.negatives.values() if count and len(v) < count)
        stats.seconds = time.perf_counter() - self.started
        if self.use_cache:
            stored = {k: v for k, v in stats.to_json().items() if k not in ("cached", "seconds")}
            mining_cache.store(self.key, table, stored)
        return table, stats


def _filter_with_teacher(
    collection: Collection,
    pools: dict[str, list[tuple[int, str]]],
    count: int,
    teacher: Teacher,
    margin: float,
    reference: Reference,
    stats: MiningStats,
) -> dict[str, list[tuple[int, str]]]:
    """Walk each query's shuffled pool, scoring in rounds, until ``count`` negatives survive."""
    corpus, queries = collection.corpus, collection.queries
    pos_pairs = [
        (qid, d) for qid in pools for d in sorted(collection.positives(qid)) if d in corpus.index
    ]
    pos_values = teacher.score_pairs(
        [queries[q] for q, _ in pos_pairs], [corpus.text_of(d) for _, d in pos_pairs]
    )
    stats.teacher_pairs += len(pos_pairs)
    positive_scores: dict[str, list[float]] = {}
    for (qid, _), value in zip(pos_pairs, pos_values.tolist(), strict=True):
        positive_scores.setdefault(qid, []).append(value)
    kept: dict[str, list[tuple[int, str]]] = {qid: [] for qid in pools}
    cursor = dict.fromkeys(pools, 0)
    while True:
        batch: list[tuple[str, int, str]] = []
        for qid, pool in pools.items():
            if count and len(kept[qid]) >= count:
                continue
            take = len(pool) if not count else max(2 * (count - len(kept[qid])), 4)
            for rank, doc_id in pool[cursor[qid] : cursor[qid] + take]:
                batch.append((qid, rank, doc_id))
            cursor[qid] += take
        if not batch:
            return kept
        values = teacher.score_pairs(
            [queries[q] for q, _, _ in batch], [corpus.text_of(d) for _, _, d in batch]
        )
        stats.teacher_pairs += len(batch)
        by_query: dict[str, list[int]] = {}
        for i, (qid, _, _) in enumerate(batch):
            by_query.setdefault(qid, []).append(i)
        for qid, rows in by_query.items():
            keep = false_negative_mask(values[rows], positive_scores[qid], margin, reference)
            for i, ok in zip(rows, keep.tolist(), strict=True):
                if not ok:
                    stats.false_negatives += 1
                elif not count or len(kept[qid]) < count:
                    kept[qid].append(batch[i][1:])
