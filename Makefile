# mpt-platform: `make demo` runs the main job, `make test` the tests. Both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt-installed
APT_PACKAGES := dataset-fashion-mnist postgresql
TORCH_PIN := torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: setup test lint demo quickstart bench results clean

setup: $(STAMP) $(APT_STAMP)

# System packages (real demo data). Needs root; skipped with a note otherwise.
$(APT_STAMP): | $(STAMP)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "note: install$$missing with apt-get as root for the real-data demo and tests"; exit 0; fi; \
	fi; touch $@

# The virtual environment. pip is upgraded first (old pips backtrack for minutes), torch is
# pinned to the local CPU build before anything can pull an unpinned CUDA torch.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev,demo-data]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup lint
	$(PY) -m pytest -q

# The main job on the embedded defaults: prepare the demo domains' data, run the retrain
# flow (DVC, Great Expectations, Ray, Prefect ephemeral mode, SQLite registry under
# $$MPT_HOME, default ~/.mpt), then print the registry.
demo: setup
	$(VENV)/bin/mpt domain prepare retail manufacturing medical
	$(VENV)/bin/mpt run
	$(VENV)/bin/mpt registry list
	$(VENV)/bin/mpt promote list --status pending

quickstart: setup
	$(PY) examples/quickstart.py

bench: setup
	$(PY) bench/step_cost.py

# Every method on the three demo domains, 3 seeds: writes docs/results.md (about 30 min).
results: setup
	$(VENV)/bin/mpt domain prepare retail manufacturing medical
	$(PY) bench/results.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
