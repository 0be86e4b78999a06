# ctx-inpaint: every target but `install` uses the virtual environment in .venv/
PY := .venv/bin/python
ARGS ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

install: ## Create .venv/ and install the package (editable) with dev extras
	python3 -m venv .venv
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"

train: ## Train the default experiment (l2_0999) on the embedded photos; extra Hydra overrides in ARGS=
	$(PY) -m ctx_inpaint.train +experiment=l2_0999 $(ARGS)

test: ## Run the test suite
	$(PY) -m pytest -q $(ARGS)

lint: ## Ruff lint and format check
	$(PY) -m ruff check ctx_inpaint tests
	$(PY) -m ruff format --check ctx_inpaint tests

format: ## Apply ruff formatting and safe fixes
	$(PY) -m ruff check --fix ctx_inpaint tests
	$(PY) -m ruff format ctx_inpaint tests

clean: ## Remove run outputs (logs/) and caches, keep .venv
	rm -rf logs .pytest_cache .ruff_cache

.PHONY: help install train test lint format clean
