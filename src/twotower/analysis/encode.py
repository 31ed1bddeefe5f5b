"""Glue from a model to the probes' input: encode a split's judged queries and its corpus."""

from __future__ import annotations

from twotower.analysis.embeddings import TowerEmbeddings
from twotower.data.collection import Collection
from twotower.models.embedding_cache import encode_corpus, encode_queries
from twotower.models.encoder import Encoder


def tower_embeddings(
    encoder: Encoder, collection: Collection, name: str, *, use_cache: bool = True
) -> TowerEmbeddings:
    """Both towers' embeddings of ``collection`` (documents from the shared embedding cache)."""
    documents, _ = encode_corpus(encoder, collection.corpus, use_cache=use_cache)
    query_ids = collection.judged_query_ids
    queries, _ = encode_queries(
        encoder, [collection.queries[q] for q in query_ids], use_cache=use_cache
    )
    return TowerEmbeddings(
        name, query_ids, queries, collection.corpus.ids, documents, similarity="cos"
    )
