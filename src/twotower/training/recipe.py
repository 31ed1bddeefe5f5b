"""YAML recipes: every choice of a training run, validated on load.

A misspelt key is an error naming the file, its line and the nearest valid key; ``--set
key.sub=value`` overrides any field from the command line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from twotower.data.yaml_file import KeyLines, line_of, read_yaml
from twotower.errors import ConfigError, did_you_mean
from twotower.generation.base import SamplingSettings
from twotower.generation.prompts import (
    DEFAULT_MAX_PASSAGE_WORDS,
    QUERY_TYPES,
    parse_query_types,
)
from twotower.losses.spec import LossSpec, build_loss, parse_loss_specs
from twotower.negatives.retrievers import parse_retriever_spec
from twotower.retrieval.ann import IndexSettings, IndexType, faiss_available


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IndexFields(Section):
    """How a section searches a corpus: ``exact`` (ours, no FAISS needed), or through FAISS:
    ``flat`` (exact, faster on a CPU), ``ivf`` (ivf_lists k-means cells, ivf_probe visited per
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

    @model_validator(mode="after")
    def _frozen_needs_separate(self) -> ModelConfig:
        if not self.train_document_tower and self.towers != "separate":
            raise ValueError(
                "train_document_tower: false needs towers: separate (a shared network cannot freeze one side)"
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
    rank_window: tuple[int, int] = (10, 100)
    false_negative_margin: float | None = None  # needs a teacher
    seed: int = 0
    # DANCE (Li et al. 2021): M mined negative queries per example, columns after the hard negatives.
    # Mined for each positive document among the training queries (never one that has the
    # document as a positive), ranks negative_query_window, with the retriever of ``source``
    # (``dense`` with ``model`` when source is none).
    negative_queries: int = Field(0, ge=0)
    negative_query_window: tuple[int, int] = (1, 200)

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
    # WiSE-FT (Wortsman et al. 2022): final weights = a * fine-tuned + (1 - a) * base.
    wise_ft: float | None = Field(None, gt=0, le=1)
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
        None  # ict, crop, smollm2, gemma3-270m, a folder/.gguf, a URL; None: off
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


class Recipe(Section):
    """A whole run. Sections: model, train, negatives, teacher, loss, optim, refresh, synthetic,
    eval, output_dir."""

    name: str = "recipe"
    description: str = ""
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainDataConfig = Field(default_factory=TrainDataConfig)
    negatives: NegativesConfig = Field(default_factory=NegativesConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    # Validated loss specs (twotower.losses.spec), kept as parsed.
    loss: list[LossSpec] = Field(
        default_factory=lambda: parse_loss_specs([{"loss": "contrastive", "preset": "mnrl"}])
    )
    optim: OptimConfig = Field(default_factory=OptimConfig)
    refresh: RefreshConfig = Field(default_factory=RefreshConfig)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output_dir: str | None = None

    @field_validator("loss", mode="before")
    @classmethod
    def _losses(cls, value: Any) -> list:
        try:
            return parse_loss_specs(value)
        except ConfigError as exc:  # re-raised as ValueError so the message gains file and line
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.negatives.false_negative_margin is not None and self.teacher.kind == "none":
            raise ValueError(
                "negatives.false_negative_margin filters by teacher score: set teacher.kind and teacher.model"
            )
        needs_teacher = {spec.loss for spec in self.loss} & {"margin_mse", "listwise_kl"}
        if needs_teacher and self.teacher.kind == "none":
            raise ValueError(
                f"loss {sorted(needs_teacher)} needs teacher scores: set teacher.kind and teacher.model"
            )
        no_negatives = self.negatives.source == "none" and not self.train.pairs
        if "margin_mse" in needs_teacher and (self.negatives.count == 0 or no_negatives):
            raise ValueError(
                "loss margin_mse needs hard negatives: set negatives.source and negatives.count >= 1"
            )
        if self.teacher.drop_below_percentile is not None and self.teacher.kind == "none":
            raise ValueError(
                "teacher.drop_below_percentile filters queries by teacher score: set teacher.kind and teacher.model"
            )
        if self.optim.mini_batch_size is not None and not self.model.train_document_tower:
            raise ValueError(
                "optim.mini_batch_size (gradient caching) is for training both towers; with a frozen"
                " document tower only queries are encoded and a large batch already fits"
            )
        self._check_negative_queries()
        self._check_refresh()
        if self.synthetic.generator and not self.train.synthetic_queries:
            raise ValueError(
                "synthetic.generator: it writes train.synthetic_queries; set that to the file to write"
            )
        return self

    def _check_refresh(self) -> None:
        refresh, negatives = self.refresh, self.negatives
        if refresh.mode == "off":
            return
        if not self.train.data or self.train.pairs:
            raise ValueError(
                "refresh.mode: a round re-mines a collection's corpus: set train.data, not train.pairs"
            )
        if negatives.source in ("none", "file") and negatives.count != 0:
            raise ValueError(
                "refresh.mode: the first negatives come from mining: set negatives.source"
                " (bm25, dense or fusion; ANCE starts from BM25)"
            )
        if negatives.count == 0 and negatives.negative_queries == 0:
            raise ValueError(
                "refresh.mode: nothing to refresh (negatives.count and negative_queries are 0)"
            )
        if {spec.loss for spec in self.loss} & {"margin_mse", "listwise_kl"}:
            raise ValueError(
                "refresh.mode: a teacher loss is not supported with refresh yet: a round would need the"
                " teacher's scores of its new negatives"
            )
        if negatives.false_negative_margin is not None:
            raise ValueError(
                "refresh.mode: negatives.false_negative_margin is not applied to refreshed negatives"
                " yet (a round would need the teacher's scores of its candidates); unset one of them"
            )
        window = refresh.rank_window or negatives.rank_window
        if window[1] > refresh.depth:
            raise ValueError(
                f"refresh.rank_window ends at rank {window[1]}, deeper than refresh.depth"
                f" ({refresh.depth})"
            )

    def _check_negative_queries(self) -> None:
        for spec in self.loss:
            if spec.loss != "margin_mse" or spec.dual_weight <= 0:
                continue
            if spec.dual_negatives == "in_batch":
                raise ValueError(
                    "loss margin_mse with dual_negatives: in_batch needs teacher scores for every (query, document)"
                    " pair of a batch, which training does not compute; use dual_negatives: mined with"
                    " negatives.negative_queries >= 1"
                )
            if self.negatives.negative_queries < 1:
                raise ValueError(
                    "loss margin_mse with dual_weight > 0 (dual_negatives: mined) needs mined negative queries:"
                    " set negatives.negative_queries >= 1"
                )
        m = self.negatives.negative_queries
        if m == 0:
            return
        try:
            reads = build_loss(self.loss).reads
        except ConfigError as exc:  # as a ValueError, so the message gains file and line
            raise ValueError(str(exc)) from None
        if "negative_queries" not in reads:
            raise ValueError(
                f"negatives.negative_queries: {m}, but no loss reads negative queries; they need a contrastive"
                " d2q block (preset mnrl_dual or samtone_both, or directions with d2q) or margin_mse with"
                " dual_weight > 0 — or set negatives.negative_queries: 0"
            )
        if not self.model.train_document_tower:
            raise ValueError(
                "negatives.negative_queries needs the document tower to train (model.train_document_tower: true)"
            )
        if self.train.pairs:
            raise ValueError(
                "negatives.negative_queries mines from a collection's queries: use train.data, not train.pairs"
            )


# --- loading, overrides and error messages ----------------------------------------------------


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Recipe
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return None
        model = field.annotation
    return model


def _explain(exc: ValidationError, source: str, lines: KeyLines) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if isinstance(err.get("ctx", {}).get("error"), ConfigError):
        message = str(err["ctx"]["error"])
    entry = re.match(r"loss\[(\d+)\]", message) if loc == ("loss",) else None
    # A check across sections names its key first ("refresh.mode: ..."): point at that key.
    named = re.match(r"([a-z_]+(?:\.[a-z_]+)+):", message) if not loc else None
    if entry:
        line = line_of(lines, ("loss", int(entry.group(1))))
    else:
        line = line_of(lines, tuple(named.group(1).split(".")) if named else loc)
    where = f"{source}:{line}" if line else source
    dotted = ".".join(str(p) for p in loc) or "recipe"
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        valid = sorted(parent.model_fields) if parent else []
        prefix = ".".join(map(str, loc[:-1]))
        hint = did_you_mean(dotted, [f"{prefix}.{v}" if prefix else v for v in valid])
        return ConfigError(
            f"{where}: unknown key '{dotted}'{hint}; valid keys here: {', '.join(valid)}"
        )
    if loc in ((), ("loss",)):
        return ConfigError(f"{where}: {message}")
    return ConfigError(f"{where}: {dotted}: {message}")


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:  # a python/... tag too: the safe loader builds no object
        raise ConfigError(
            f"--set {text!r}: invalid YAML value ({getattr(exc, 'problem', None) or exc})"
        ) from None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for override in overrides:
        path, value = parse_override(override)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {override!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    data, lines = read_yaml(path, "recipe")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    apply_overrides(data, overrides or [])
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, str(path), lines) from None


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
