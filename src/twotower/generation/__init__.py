"""Synthetic training queries: typed LLM queries (CADET, Tamber et al. 2025) and the classic
model-free ones (ICT, Lee et al. 2019; cropping, Izacard et al. 2021), written to the JSONL
that ``train.synthetic_queries`` reads.

``build_generator(spec)`` gives a :class:`Generator` (``ict``, ``crop``, ``ict+crop``, ``smollm2``,
``gemma3-270m``, a model folder or ``.gguf`` file, a hub name, an ``http(s)://`` endpoint);
``generate_queries(...)`` runs a resumable job with it.
"""

from twotower.generation.base import (
    GenerationError,
    GenerationTask,
    Generator,
    SamplingSettings,
    task_seed,
)
from twotower.generation.classic import (
    CropGenerator,
    ICTGenerator,
    MixedGenerator,
    split_sentences,
)
from twotower.generation.job import (
    GenerationReport,
    dropped_path,
    generate_queries,
    query_id,
    select_documents,
)
from twotower.generation.junk import REASONS, JunkFilter, Verdict, clean_completion
from twotower.generation.prompts import (
    PROMPT_VERSION,
    QUERY_TYPES,
    PromptBuilder,
    load_prompts,
    parse_query_types,
)
from twotower.generation.resume import read_done
from twotower.generation.spec import CUTS, NAMED, build_generator

__all__ = [
    "CUTS",
    "NAMED",
    "PROMPT_VERSION",
    "QUERY_TYPES",
    "REASONS",
    "CropGenerator",
    "GenerationError",
    "GenerationReport",
    "GenerationTask",
    "Generator",
    "ICTGenerator",
    "MixedGenerator",
    "JunkFilter",
    "PromptBuilder",
    "SamplingSettings",
    "Verdict",
    "build_generator",
    "clean_completion",
    "dropped_path",
    "generate_queries",
    "load_prompts",
    "parse_query_types",
    "query_id",
    "read_done",
    "select_documents",
    "split_sentences",
    "task_seed",
]
