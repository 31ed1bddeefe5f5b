"""Hard negatives: mining (BM25, dense, fusion), sampling, false-negative filtering, files.

``mine_negatives`` → a :class:`NegativesTable` (query id → negative document ids);
``mine_negative_queries`` → the same shape for DANCE (document id → negative query ids);
``NegativeSampler`` draws k per training example and can swap in a refreshed table.
"""

from twotower.negatives.filtering import false_negative_mask, positive_reference
from twotower.negatives.io import read_negatives, write_negatives
from twotower.negatives.mine import MiningStats, RankWindow, mine_negatives, training_query_ids
from twotower.negatives.queries import mine_negative_queries, positive_queries_by_document
from twotower.negatives.retrievers import (
    BM25Retriever,
    DenseRetriever,
    FusionRetriever,
    Retriever,
    make_retriever,
)
from twotower.negatives.table import (
    NegativeSampler,
    NegativesTable,
    rng_for,
    sample_positions,
    stable_seed,
)

__all__ = [
    "BM25Retriever",
    "DenseRetriever",
    "FusionRetriever",
    "MiningStats",
    "NegativeSampler",
    "NegativesTable",
    "RankWindow",
    "Retriever",
    "false_negative_mask",
    "make_retriever",
    "mine_negative_queries",
    "mine_negatives",
    "positive_queries_by_document",
    "positive_reference",
    "read_negatives",
    "rng_for",
    "sample_positions",
    "stable_seed",
    "training_query_ids",
    "write_negatives",
]
