"""Reading BEIR-layout collections and training files."""

from twotower.data.beir import Corpus, Document, Qrels, iter_corpus, load_qrels, load_queries
from twotower.data.collection import Collection, load_collection, load_corpus
from twotower.data.locate import locate_collection
from twotower.data.synthetic import load_synthetic_queries

__all__ = [
    "Collection",
    "Corpus",
    "Document",
    "Qrels",
    "iter_corpus",
    "load_collection",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "load_synthetic_queries",
    "locate_collection",
]
