"""The sections of a recipe (twotower.training.recipe): each validates its own fields; rules
that read several sections are in twotower.training.recipe_rules."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from twotower.errors import ConfigError
from twotower.generation.base import SamplingSettings
from twotower.generation.prompts import (
    DEFAULT_MAX_PASSAGE_WORDS,
    QUERY_TYPES,
    parse_query_types,
)
from twotower.negatives.mine import NEGATIVE_WINDOW
from twotower.negatives.queries import NEGATIVE_QUERY_WINDOW
from twotower.negatives.retrievers import parse_retriever_spec
from twotower.retrieval.ann import IndexSettings, IndexType, faiss_available


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IndexFields(Section):
    """How a section searches a corpus: ``exact`` (FAISS's brute-force k-NN where installed,
    else torch's; equal scores in document order), or through a FAISS index: ``flat`` (exact,
    equal scores in FAISS's order), ``ivf`` (ivf_lists k-means cells, ivf_probe visited per
    query) or ``hnsw`` (hnsw_neighbors links per node) for corpora beyond exact search; see
    twotower.retrieval.ann."""

    index: IndexType = "exact"
    ivf_lists: int | None = Field(None, gt=0)  # None: 4·√(corpus size)
    ivf_probe: int = Field(16, gt=0)
    hnsw_neighbors: int = Field(32, ge=2)

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        if value != "exact" and not faiss_available():
            raise ValueError(f"index {value} needs FAISS (pip install faiss-cpu)")
        return value

    def index_settings(self) -> IndexSettings:
        return IndexSettings(
            self.index,
            lists=self.ivf_lists,
            probe=self.ivf_probe,
            neighbors=self.hnsw_neighbors,
        )


class ModelConfig(Section):
    name: str = "all-MiniLM-L6-v2"
    towers: Literal["shared", "separate"] = "shared"
    pooling: Literal["mean", "cls", "max", "lasttoken"] | None = None  # None: the model's own
    max_query_length: int = Field(64, gt=0)
    max_document_length: int = Field(256, gt=0)
    query_prompt: str = ""
    document_prompt: str = ""
    # False: only the query tower trains; documents are encoded once (frozen index).
    train_document_tower: bool = True
    # A residual adapter on the document route's output (twotower.models.adapter), trained at
    # optim.adapter_learning_rate: over a frozen index, the document side still adapts.
    document_adapter: bool = False

    @model_validator(mode="after")
    def _frozen_needs_separate(self) -> ModelConfig:
        if not self.train_document_tower and self.towers != "separate":
            raise ValueError(
                "train_document_tower: false needs towers: separate (a shared network cannot freeze one side)"
            )
        if self.document_adapter and self.towers != "separate":
            raise ValueError(
                "document_adapter needs towers: separate (on a shared network it would adapt queries too)"
            )
        return self


class TrainDataConfig(Section):
    """Where training pairs come from: a collection's qrels, a pairs/triples JSONL, or synthetic
    queries generated for the passages of ``data``'s corpus."""

    data: str | None = "scifact"
    split: str = "train"
    pairs: str | None = None  # JSONL: {"query", "positive", "negatives"?} texts
    # JSONL: {"query", "doc_id", "query_id"?, "type"?}, queries written for data's passages
    # (twotower.data.synthetic). They replace the split's queries unless include_split is true.
    synthetic_queries: str | None = None
    query_types: list[str] | None = None  # keep only these synthetic query types
    include_split: bool = False  # train on the split's labelled queries as well
    max_examples: int | None = Field(None, gt=0)
    # Truncate documents to this many tokens while training only (CPU budgets); the saved model
    # keeps model.max_document_length, so evaluation is unchanged. None: model.max_document_length.
    max_document_length: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> TrainDataConfig:
        if not self.data and not self.pairs:
            raise ValueError("give train.data (a collection) or train.pairs (a JSONL file)")
        if self.synthetic_queries and (self.pairs or not self.data):
            raise ValueError(
                "train.synthetic_queries are queries for train.data's corpus: set train.data, not train.pairs"
            )
        if (self.query_types or self.include_split) and not self.synthetic_queries:
            raise ValueError(
                "train.query_types and train.include_split apply to train.synthetic_queries, which is not set"
            )
        return self


class NegativesConfig(IndexFields):
    """Hard negatives mined once before training; ``index`` is how a dense or fused retriever
    searches the corpus (see IndexFields)."""

    source: Literal["none", "bm25", "dense", "fusion", "file"] = "none"
    model: str | None = None  # dense / fusion retriever; default: the model being trained
    file: str | None = None  # source file: a negatives JSONL (twotower mine), used as it is
    # Hard negatives per training row. None: 1 when mined; a triples file's width (the fewest
    # negatives of its rows that have any) for train.pairs.
    count: int | None = Field(None, ge=0)
    # fusion retriever: weight of BM25 against the dense model (linear fusion of min-max scores).
    alpha: float = Field(0.5, ge=0, le=1)
    rank_window: tuple[int, int] = NEGATIVE_WINDOW.as_tuple()
    false_negative_margin: float | None = None  # needs a teacher
    seed: int = 0
    # DANCE (Li et al. 2021): M mined negative queries per example, columns after the hard negatives.
    # Mined for each positive document among the training queries (never one that has the
    # document as a positive), ranks negative_query_window, with the retriever of ``source``
    # (``dense`` with ``model`` when source is none).
    negative_queries: int = Field(0, ge=0)
    negative_query_window: tuple[int, int] = NEGATIVE_QUERY_WINDOW.as_tuple()

    @model_validator(mode="after")
    def _file_source(self) -> NegativesConfig:
        if (self.source == "file") != (self.file is not None):
            raise ValueError(
                "negatives.source: file and negatives.file go together (the file of `twotower mine -o`)"
            )
        if self.source == "file" and self.false_negative_margin is not None:
            raise ValueError(
                "negatives.false_negative_margin filters while mining; a negatives file is used as it"
                " is: filter it with `twotower mine --teacher ... --margin ...`"
            )
        if self.index != "exact" and self.source in ("bm25", "file"):
            raise ValueError(
                f"negatives.index searches dense embeddings; source {self.source} has none"
            )
        return self

    @field_validator("rank_window", "negative_query_window")
    @classmethod
    def _window(cls, value: tuple[int, int], info) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1]:
            raise ValueError(
                f"{info.field_name} must be [first, last] with 1 <= first <= last, got {list(value)}"
            )
        return value


class TeacherConfig(Section):
    kind: Literal["none", "cross_encoder", "bi_encoder", "fusion", "scores_file"] = "none"
    model: str | None = (
        None  # scores_file: the JSONL of {"query_id", "doc_id", "score"} (twotower teach)
    )
    alpha: float = Field(0.5, ge=0, le=1)  # fusion: weight of BM25
    normalize: bool = False  # percentile min-max per collection (Tamber et al. 2025)
    # Listwise distillation (Tamber et al. 2025): drop the queries whose best teacher score (over
    # their positive and hard negatives) is below this percentile of all those scores (25).
    drop_below_percentile: float | None = Field(None, ge=0, lt=100)

    @model_validator(mode="after")
    def _model_needed(self) -> TeacherConfig:
        if self.kind != "none" and not self.model:
            raise ValueError(f"teacher.kind {self.kind!r} needs teacher.model")
        return self


class OptimConfig(Section):
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(32, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    # Gradient caching (GradCache): embed each column this many texts at a time and cache the
    # embedding gradients, so batch_size (the in-batch negatives) is bounded by time, not memory.
    mini_batch_size: int | None = Field(None, gt=0)
    seed: int = 42
    precision: Literal["fp32", "bf16", "auto"] = "auto"
    save_steps: int = Field(50, gt=0)
    save_total_limit: int = Field(2, gt=0)
    logging_steps: int = Field(5, gt=0)
    # WiSE-FT (Wortsman et al. 2022): final weights = a * fine-tuned + (1 - a) * base; a
    # document adapter's residual is scaled by a (its base is the identity).
    wise_ft: float | None = Field(None, gt=0, le=1)
    # The learning rate of model.document_adapter's weights (a small MLP started at zero).
    adapter_learning_rate: float = Field(1e-3, gt=0)
    # Optimizer steps with a NaN or infinite loss to skip (no update) before training stops;
    # 0: stop at the first (twotower.training.nonfinite).
    skip_nonfinite_batches: int = Field(0, ge=0)


class RefreshConfig(IndexFields):
    """ANCE/DANCE: hard negatives (and negative queries) re-mined from the weights being trained,
    beside the trainer (twotower.training.refresh). ``async``: training never waits; ``sync``:
    training waits for each round (the baseline for the overhead); ``off``: mined once."""

    mode: Literal["off", "async", "sync"] = "off"
    # A round every N optimizer steps; None (async only): a new round as soon as one finishes.
    every_steps: int | None = Field(None, gt=0)
    # Share of the training queries a round refreshes (ANCE refreshes in chunks); 1: all.
    fraction: float = Field(1.0, gt=0, le=1)
    depth: int = Field(200, gt=0)  # search depth of a round (index: exact is ANCE's own choice)
    # Candidates kept per query / per positive document; None: 4 x negatives.count / max(20, M).
    negatives_per_query: int | None = Field(None, gt=0)
    negative_queries_per_document: int | None = Field(None, gt=0)
    # Rank windows of a round; None: negatives.rank_window / negatives.negative_query_window.
    rank_window: tuple[int, int] | None = None
    negative_query_window: tuple[int, int] | None = None
    device: str | None = None  # where a round encodes (cpu, cuda:1, ...); None: best available
    threads: int | None = Field(None, gt=0)  # torch threads of a round on a CPU
    precision: Literal["fp32", "bf16", "auto"] = "auto"  # encoding precision of a round
    max_length: int | None = Field(None, gt=0)  # tokens per text in a round; None: the model's

    @field_validator("mode", mode="before")
    @classmethod
    def _unquoted_off(cls, value):
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false

    @field_validator("rank_window", "negative_query_window")
    @classmethod
    def _window(cls, value, info):
        if value is not None and not 1 <= value[0] <= value[1]:
            raise ValueError(
                f"{info.field_name} must be [first, last] with 1 <= first <= last, got {list(value)}"
            )
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is not None and value != "cpu":
            import torch  # only when a device is named

            kind = value.split(":")[0]
            if kind == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"{value!r} is not available on this machine")
            if kind not in ("cuda", "mps"):
                raise ValueError(f"expected cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @model_validator(mode="after")
    def _cadence(self) -> RefreshConfig:
        if self.mode == "sync" and self.every_steps is None:
            raise ValueError("mode sync needs every_steps (training waits for each round)")
        return self


class SyntheticFilterConfig(Section):
    """Round-trip filtering of the generated queries (twotower.generation.roundtrip)."""

    # bm25, dense:MODEL, fusion:MODEL: the first-stage retrievers.
    retrievers: list[str] = Field(default_factory=lambda: ["bm25", "dense:all-MiniLM-L6-v2"])
    top_k: int = Field(20, gt=0)  # the source passage must rank within the top K
    # any: within the top K of any one retriever (Tamber et al.'s code); fused: of their RRF (k 60).
    first_stage_rule: Literal["any", "fused"] = "any"
    teacher: str | None = None  # KIND:NAME; then the teacher must rank the source first
    # Then drop a query whose teacher score of its source is below this percentile of ...
    percentile: float | None = Field(None, ge=0, lt=100)
    # ... all candidates' teacher scores (the paper's code), or the kept queries' best scores;
    percentile_of: Literal["all", "best"] = "all"
    per_type: bool = True  # ... taken per query type (the paper's code), or over all types.

    @field_validator("retrievers")
    @classmethod
    def _retrievers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("round-trip filtering needs at least one retriever")
        for spec in value:
            try:
                parse_retriever_spec(spec)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _percentile_needs_teacher(self) -> SyntheticFilterConfig:
        if self.percentile is not None and self.teacher is None:
            raise ValueError("percentile cuts on the teacher's scores: set teacher too")
        return self


class SyntheticConfig(Section):
    """Write ``train.synthetic_queries`` before training when it is not there yet: queries
    generated for ``train.data``'s passages (twotower.generation), then round-trip filtered.
    The file is reused by every recipe naming it with the same settings (its manifest,
    FILE.settings.json, records them); generation resumes where an interrupted run stopped."""

    generator: str | None = (
        None  # ict, crop, ict+crop, smollm2, gemma3-270m, a folder/.gguf, a URL; None: off
    )
    model_name: str | None = None  # the served model of an HTTP endpoint
    types: list[str] = Field(default_factory=lambda: list(QUERY_TYPES))
    per_doc: int = Field(1, gt=0)  # queries of each type per passage
    # Passages: a uniform random sample of the corpus (seeded), the first `limit`, or all.
    sample: int | None = Field(None, gt=0)
    limit: int | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    temperature: float = Field(SamplingSettings.temperature, ge=0)
    top_p: float = Field(SamplingSettings.top_p, gt=0, le=1)
    max_new_tokens: int = Field(SamplingSettings.max_new_tokens, gt=0)
    max_passage_words: int = Field(DEFAULT_MAX_PASSAGE_WORDS, gt=0)
    batch_size: int | None = Field(None, gt=0)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # a local model's weights
    filter: SyntheticFilterConfig | None = Field(default_factory=SyntheticFilterConfig)

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        try:
            return parse_query_types(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _one_selection(self) -> SyntheticConfig:
        if self.sample is not None and self.limit is not None:
            raise ValueError("give sample or limit, not both")
        return self


EvalTask = Literal["retrieval", "dual"]


def _retrieval_only() -> list[EvalTask]:
    return ["retrieval"]


class EvalConfig(IndexFields):
    """What ``twotower run`` evaluates, and how (``index``: see IndexFields; an approximate
    index's recall against exact search is reported beside the metrics)."""

    collections: list[str] = Field(default_factory=lambda: ["scifact"])
    split: str = "test"
    metrics: list[str] = Field(
        default_factory=lambda: ["ndcg@10", "mrr@10", "map@100", "recall@10", "recall@100"]
    )
    bm25: bool = True
    base_model: bool = True
    batch_size: int = Field(64, gt=0)
    probe: bool = True
    # retrieval: queries rank documents; dual: relevant documents rank the split's queries
    # (DANCE's dual task, Li et al. 2021), reported beside the first.
    tasks: list[EvalTask] = Field(default_factory=_retrieval_only)
