"""Hard negative queries for the dual loss of DANCE (Li et al. 2021, "More Robust Dense
Retrieval with Contrastive Dual Learning").

For each positive document of a training query: search an index of all training-query
embeddings with the document's embedding, take the top ``window.end`` (200), drop the queries
that have that document as a positive (under the split's qrels), and sample ``count`` (20) as
:func:`~twotower.negatives.mine.mine_negatives` samples documents. Result: a
:class:`NegativesTable` of kind ``"queries"`` (document id → negative query ids).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from twotower.data.collection import Collection
from twotower.negatives.mine import (
    MiningCacheEntry,
    MiningStats,
    RankWindow,
    check_count,
    check_known_queries,
    first_of_each,
    shuffled_candidates,
    training_query_ids,
)
from twotower.negatives.retrievers import Retriever
from twotower.negatives.table import NegativesTable

# The defaults of mining DANCE's negative queries, wherever they are mined.
NEGATIVE_QUERY_WINDOW = RankWindow(1, 200)
NEGATIVE_QUERIES_PER_DOCUMENT = 20


def mine_negative_queries(
    collection: Collection,
    retriever: Retriever,
    *,
    window: RankWindow = NEGATIVE_QUERY_WINDOW,
    count: int = NEGATIVE_QUERIES_PER_DOCUMENT,
    seed: int = 0,
    query_ids: Sequence[str] | None = None,
    use_cache: bool = True,
) -> tuple[NegativesTable, MiningStats]:
    """Hard negative queries for every positive document of the training queries."""
    check_count(count)
    started = time.perf_counter()
    if query_ids is None:
        query_ids = training_query_ids(collection)
    else:
        check_known_queries(collection, query_ids)
        query_ids = list(query_ids)
    index_set = set(query_ids)
    positive_of = collection.judging_queries()
    doc_ids = [
        d
        for d in dict.fromkeys(d for q in query_ids for d in sorted(collection.positives(q)))
        if d in collection.corpus.index
    ]
    settings = {
        "what": "queries",
        "retriever": retriever.fingerprint,
        "window": str(window),
        "count": count,
        "seed": seed,
        "index": sorted(index_set),
    }
    mining = MiningCacheEntry(collection, "queries", doc_ids, settings, use_cache, started)
    if mining.cached is not None:
        return mining.cached
    run = (
        retriever.run_reverse(collection, doc_ids, query_ids, min(window.end, len(query_ids)))
        if doc_ids
        else {}
    )
    pools = {
        d: shuffled_candidates(run.get(d, {}), window, set(positive_of.get(d, ())), seed, d)
        for d in doc_ids
    }
    stats = MiningStats(anchors=len(doc_ids), candidates=sum(len(p) for p in pools.values()))
    positives = {d: [q for q in positive_of.get(d, []) if q in index_set] for d in doc_ids}
    return mining.finish(first_of_each(pools, count), positives, count, stats)
