"""YAML recipes: every choice of a training run, validated on load.

A recipe is the sections of twotower.training.recipe_sections, each validating its own fields,
and the rules across sections of twotower.training.recipe_rules. A misspelt key is an error
naming the file, its line and the nearest valid key; ``--set key.sub=value`` overrides any field
from the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from twotower.data.yaml_file import KeyLines, line_of, read_yaml
from twotower.errors import ConfigError, did_you_mean
from twotower.losses.spec import LossSpec, parse_loss_specs
from twotower.training.recipe_rules import check_recipe
from twotower.training.recipe_sections import (
    EvalConfig,
    ModelConfig,
    NegativesConfig,
    OptimConfig,
    RefreshConfig,
    Section,
    SyntheticConfig,
    TeacherConfig,
    TrainDataConfig,
)


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
        return parse_loss_specs(value)  # a ConfigError is a ValueError: pydantic reports it

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        check_recipe(self)
        return self


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
    rule = err.get("ctx", {}).get("error")
    if isinstance(rule, ConfigError):
        message = str(rule)
    if isinstance(rule, ConfigError) and rule.key is not None:  # point at the key it names
        line = line_of(lines, rule.key)
    else:
        line = line_of(lines, loc)
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
