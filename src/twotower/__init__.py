"""twotower: train, evaluate and probe dense retrievers.

The library behind each command, loaded on first use (``import twotower`` imports neither torch
nor sentence-transformers):

* :func:`load_recipe` ``(path, overrides)`` → :class:`Recipe`: a YAML recipe, ``--set``-style
  overrides applied (``["optim.epochs=2"]``).
* :func:`run` ``(recipe, run_dir)`` → the results payload (``twotower run``): trains, evaluates
  the base and trained model and BM25 on ``recipe.eval.collections``, writes ``report.md`` and
  ``results.json``.
* :func:`train` ``(recipe, run_dir)`` → ``(TrainOutcome, PreparedData)`` (``twotower train``).
* :func:`evaluate` ``(collection, encoders=..., bm25=...)`` → a list of :class:`EvalResult`
  (``twotower eval``), with :func:`load_collection` and :class:`Encoder`; :func:`evaluate_dual`
  for DANCE's dual task.
* :func:`adapt` ``(data, output_dir=...)`` → the results payload (``twotower adapt``).
* :func:`compare` ``(sources, baseline=..., metric=...)`` → a :class:`Comparison` of saved
  results and run files with paired tests (``twotower compare``; ``.to_json()``, and
  ``twotower.evaluation.compare_report.markdown_comparison`` for its tables).

``python -m twotower`` is the ``twotower`` command. The sentence-transformers losses are in
:mod:`twotower.losses` (``InfoNCELoss(model, preset="mnrl_dual")``, ...).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__version__ = "0.1.0"

# name -> (module, attribute): each a library function a command calls.
_LAZY = {
    "load_recipe": ("twotower.training.recipe", "load_recipe"),
    "Recipe": ("twotower.training.recipe", "Recipe"),
    "run": ("twotower.training.run", "run_recipe"),
    "train": ("twotower.training.pipeline", "train_recipe"),
    "evaluate": ("twotower.evaluation.evaluate", "evaluate_systems"),
    "evaluate_dual": ("twotower.evaluation.evaluate", "evaluate_dual"),
    "EvalResult": ("twotower.evaluation.evaluate", "EvalResult"),
    "load_collection": ("twotower.data.collection", "load_collection"),
    "Encoder": ("twotower.models.encoder", "Encoder"),
    "AdaptOptions": ("twotower.training.adapt", "AdaptOptions"),
    "compare": ("twotower.evaluation.compare", "compare"),
    "Comparison": ("twotower.evaluation.compare", "Comparison"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'twotower' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def adapt(
    data: str,
    *,
    output_dir: str | Path,
    overrides: list[str] | None = None,
    recipe: str | Path | None = None,
    resume: bool | None = None,
    device: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Adapt a retriever to the corpus of ``data`` without labels, as ``twotower adapt``.

    ``options`` are the fields of :class:`AdaptOptions` (``model``, ``teacher``, ``generator``,
    ``per_doc``, ``sample``, ``evaluate``); ``overrides`` are ``--set``-style changes to the
    adaptation recipe (``recipe``: another one). Returns the payload of :func:`run`.
    """
    from pathlib import Path

    from twotower.training.adapt import AdaptOptions, adapt_recipe
    from twotower.training.run import run_recipe

    run_dir = Path(output_dir)
    chosen = AdaptOptions(data=data, output_dir=run_dir, **options)
    loaded = adapt_recipe(chosen, overrides, **({"recipe": Path(recipe)} if recipe else {}))
    return run_recipe(loaded, run_dir, resume=resume, device=device)


__all__ = ["__version__", "adapt", *_LAZY]
