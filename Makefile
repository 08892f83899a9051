# mpt-platform: `make demo` runs the main job, `make test` the tests. Both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt-installed
APT_PACKAGES := dataset-fashion-mnist postgresql chromium chromium-driver
TORCH_PIN := torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: setup test lint demo review screenshots quickstart bench results clean

setup: $(STAMP) $(APT_STAMP)

# System packages (real demo data, PostgreSQL and the browser for the tests). Needs root;
# skipped with a note otherwise.
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
# $$MPT_HOME, default ~/.mpt), print the registry, then make (or on a re-run, give new
# tokens to) a demo requester and reviewer and print how to review in the browser.
MPT := $(VENV)/bin/mpt
TOKEN_OF := $(PY) -c 'import json, sys; print(json.loads(sys.argv[1])["token"])'
demo: setup
	$(MPT) domain prepare retail manufacturing medical
	$(MPT) run
	$(MPT) registry list
	$(MPT) promote list --status pending
	@req=$$($(MPT) user add demo-requester --role requester --if-exists rotate --json) && \
	rev=$$($(MPT) user add demo-reviewer --role reviewer --if-exists rotate --json) && \
	printf '\nReview the candidates in the browser: `make review` serves http://127.0.0.1:8001/\n' && \
	printf 'Log in there with the reviewer token (the CLI takes them as MPT_TOKEN=...):\n\n' && \
	printf '  reviewer   demo-reviewer    %s\n' "$$($(TOKEN_OF) "$$rev")" && \
	printf '  requester  demo-requester   %s\n\n' "$$($(TOKEN_OF) "$$req")" && \
	printf 'Tokens are shown once (only their hashes are kept); `make demo` again gives new ones.\n'

# The review pages on 127.0.0.1:8001 against the registry of $$MPT_HOME (Ctrl+C stops).
review: setup
	$(VENV)/bin/mpt review

# Refresh the README's screenshots (docs/review-*.png) from the browser tests.
screenshots: setup
	MPT_SCREENSHOT_DIR=$(CURDIR)/docs $(PY) -m pytest -q tests/review/test_browser.py -k sqlite

quickstart: setup
	$(PY) examples/quickstart.py

bench: setup
	$(PY) bench/step_cost.py

# Every method on the three demo domains, 3 seeds, two domains at a time: writes
# docs/results.md (about 45 min on 2 cores; docs/results-notes.md).
results: setup
	$(VENV)/bin/mpt domain prepare retail manufacturing medical
	$(PY) bench/results.py --jobs 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
