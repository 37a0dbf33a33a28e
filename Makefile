# The harness: producer, consumer and the shared celery_tasks contracts, proven together.
# `make demo` and `make test` set up everything they need (venv, submodules) themselves.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
STAMP := $(VENV)/.installed
SUBMODULE := git -c protocol.file.allow=always submodule
REQUIREMENTS := requirements-dev.txt celery_tasks/requirements.txt producer/requirements.txt \
	consumer/requirements.txt producer/celery_tasks/requirements.txt \
	consumer/celery_tasks/requirements.txt
TASK ?= unique_magic_task
ARGS ?= unique_magic_task 1 2 3

.PHONY: help install init demo worker produce test test-parts test-harness lint vendor \
	check-vendor export clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

init: ## check out the producer/ and consumer/ copies of celery_tasks (git submodules)
	@$(SUBMODULE) update --init --recursive

install: init ## create .venv from the pinned requirements
	@$(MAKE) --no-print-directory $(STAMP)

$(STAMP): $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r producer/requirements.txt -r consumer/requirements.txt -r requirements-dev.txt
	touch $@

demo: install ## the whole job on an embedded broker: no services needed
	$(PY) -m harness.demo

worker: install ## run a worker for TASK (default unique_magic_task) against RabbitMQ
	cd consumer && $(PY) -m consumer $(TASK) $(WORKER_ARGS)

produce: install ## run the producer script with ARGS (default: unique_magic_task 1 2 3)
	cd producer && $(PY) -m producer $(ARGS)

test: install lint check-vendor test-parts test-harness ## every suite, lint and pin checks

test-parts: install ## each repo's own tests, from its own folder
	cd celery_tasks && $(PY) -m pytest -q
	cd producer && $(PY) -m pytest -q
	cd consumer && $(PY) -m pytest -q

test-harness: install ## producer and consumer together against the real RabbitMQ
	$(PY) -m pytest -q tests

lint: install ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m mypy --config-file pyproject.toml -p celery_tasks -p harness
	cd producer && $(PY) -m mypy --config-file ../pyproject.toml -p producer
	cd consumer && $(PY) -m mypy --config-file ../pyproject.toml -p consumer

vendor: ## split celery_tasks/ and pin both submodules to it, in one commit
	bash scripts/vendor.sh

check-vendor: init ## fail while a submodule pin lags celery_tasks/ at HEAD
	bash scripts/check-vendor.sh

export: ## write the three standalone repos (bare) to DEST=folder
	bash scripts/export.sh "$(DEST)"

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
