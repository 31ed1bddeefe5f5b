"""Tiny per-query scores and the results file holding them, shared by the compare tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

A = {"1": 0.5, "2": 0.9, "3": 0.2, "4": 0.7, "5": 0.4}
B = {"1": 0.3, "2": 0.6, "3": 0.3, "4": 0.2, "5": 0.1}  # differences 0.2 0.3 -0.1 0.5 0.3


def results_file(path: Path, systems: dict[str, dict[str, float]], data="/d/scifact") -> Path:
    """A results file as ``twotower run`` writes it (only the fields compare reads)."""
    entries = [
        {
            "system": name,
            "data": data,
            "split": "test",
            "metrics": {"ndcg@10": float(np.mean(list(values.values())))},
            "n_queries": len(values),
            "per_query_ndcg@10": values,
        }
        for name, values in systems.items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": entries}))
    return path
