"""Hard negatives: mining (BM25, dense, fusion), sampling, false-negative filtering, files.

``mine_negatives`` → a :class:`NegativesTable` (query id → negative document ids);
``mine_negative_queries`` → the same shape for DANCE (document id → negative query ids);
training rows draw k per example from such a table when they are read.
"""

from twotower.negatives.filtering import false_negative_mask, positive_reference
from twotower.negatives.io import read_negatives, write_negatives
from twotower.negatives.mine import (
    NEGATIVE_WINDOW,
    NEGATIVES_PER_QUERY,
    MiningStats,
    RankWindow,
    mine_negatives,
    training_query_ids,
)
from twotower.negatives.queries import (
    NEGATIVE_QUERIES_PER_DOCUMENT,
    NEGATIVE_QUERY_WINDOW,
    mine_negative_queries,
)
from twotower.negatives.retrievers import (
    BM25Retriever,
    DenseRetriever,
    FusionRetriever,
    Retriever,
    build_retriever,
)
from twotower.negatives.table import (
    NegativesTable,
    rng_for,
    stable_seed,
)

__all__ = [
    "NEGATIVES_PER_QUERY",
    "NEGATIVE_QUERIES_PER_DOCUMENT",
    "NEGATIVE_QUERY_WINDOW",
    "NEGATIVE_WINDOW",
    "BM25Retriever",
    "DenseRetriever",
    "FusionRetriever",
    "MiningStats",
    "NegativesTable",
    "RankWindow",
    "Retriever",
    "false_negative_mask",
    "build_retriever",
    "mine_negative_queries",
    "mine_negatives",
    "positive_reference",
    "read_negatives",
    "rng_for",
    "stable_seed",
    "training_query_ids",
    "write_negatives",
]
