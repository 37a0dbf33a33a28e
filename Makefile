# The harness: producer, consumer and the shared celery_tasks contracts, proven together.
# `make demo` and `make test` set up everything they need (venv, submodules) themselves.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
STAMP := $(VENV)/.installed
SUBMODULE := git -c protocol.file.allow=always submodule
REQUIREMENTS := requirements-dev.txt celery_tasks/requirements.txt \
	celery_tasks/requirements-redis.txt celery_tasks/requirements-postgres.txt \
	celery_tasks/requirements-tracing.txt celery_tasks/requirements-metrics.txt producer/requirements.txt \
	consumer/requirements.txt producer/celery_tasks/requirements.txt \
	consumer/celery_tasks/requirements.txt
TASK ?= unique_magic_task
ARGS ?= unique_magic_task 1 2 3
COMPOSE ?= docker-compose
# CLUSTER=1: the stack on three clustered RabbitMQ nodes (docker-compose.cluster.yml).
# MONITORING=1: with the `monitoring` profile too (Flower, and Prometheus on 127.0.0.1:9090).
STACK := $(COMPOSE)$(if $(filter 1 yes true,$(CLUSTER)), -f docker-compose.cluster.yml)$(if \
	$(filter 1 yes true,$(MONITORING)), --profile monitoring)
ENGINE_DIR ?= /var/tmp/celery-tasks-engine
# No DOCKER_HOST and no system engine, but `make engine` is running: every target uses it.
ifeq ($(origin DOCKER_HOST),undefined)
ifeq ($(wildcard /var/run/docker.sock),)
ifneq ($(wildcard $(ENGINE_DIR)/docker.sock),)
export DOCKER_HOST := unix://$(ENGINE_DIR)/docker.sock
endif
endif
endif
# `docker-compose run` wants a terminal unless told otherwise.
TTY_FLAG := $(shell [ -t 0 ] || echo -T)

.PHONY: help install init demo worker produce-local test test-parts test-harness test-compat \
	lint vendor check-vendor check-contracts export clean env up down logs ps produce engine \
	engine-stop faults bench

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

produce-local: install ## run the producer script locally with ARGS (default: unique_magic_task 1 2 3)
	cd producer && $(PY) -m producer $(ARGS)

test: install lint check-vendor check-contracts test-parts test-harness ## every suite, lint, pins

test-parts: install ## each repo's own tests, from its own folder
	cd celery_tasks && $(PY) -m pytest -q
	cd producer && $(PY) -m pytest -q
	cd consumer && $(PY) -m pytest -q

test-harness: install ## producer and consumer together against the real RabbitMQ
	$(PY) -m pytest -q --durations=12 tests --ignore=tests/faults
	@$(MAKE) --no-print-directory faults

# The smaller set `make test-compat` runs against the host's RabbitMQ (CI: Debian 12's 3.10).
COMPAT_TESTS := tests/test_end_to_end.py tests/test_batch_path.py tests/test_single_call.py \
	tests/test_topology.py tests/test_contract_skew.py tests/faults/test_message_size.py \
	tests/faults/test_crashes.py tests/faults/test_broker_restart.py

test-compat: install ## a smaller set against the RabbitMQ on 127.0.0.1 (or HARNESS_RABBITMQ_URL)
	HARNESS_SERVICES=local $(PY) -m pytest -q $(COMPAT_TESTS)

bench: install ## throughput and latency beside raw py-amqp, bare Celery and Dramatiq
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) -m bench

faults: install ## the fault tests alone, with their table of tasks sent, completed, lost
	$(PY) -m pytest -q --durations=12 tests/faults

lint: install ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m mypy --config-file pyproject.toml -p celery_tasks -p harness
	cd producer && $(PY) -m mypy --config-file ../pyproject.toml -p producer
	cd consumer && $(PY) -m mypy --config-file ../pyproject.toml -p consumer
	@if command -v $(COMPOSE) >/dev/null; then \
		for key in ADMIN PRODUCER WORKER; do export RABBITMQ_$${key}_USER=lint \
			RABBITMQ_$${key}_PASSWORD=lint; done; export RABBITMQ_ERLANG_COOKIE=lint; \
		$(COMPOSE) config -q && $(COMPOSE) -f docker-compose.cluster.yml config -q && \
		echo "docker-compose.yml, docker-compose.cluster.yml: valid"; \
	elif [ -n "$$CI" ]; then echo "error: $(COMPOSE) is not installed" >&2; exit 1; \
	else echo "docker-compose.yml: not checked ($(COMPOSE) is not installed)"; fi

vendor: install ## split celery_tasks/, pin both submodules to it, update docs/contracts.md
	PYTHON=$(PY) bash scripts/vendor.sh

check-vendor: init ## fail while a submodule pin lags celery_tasks/ at HEAD
	bash scripts/check-vendor.sh

# What check-contracts compares celery_tasks/ with: BASE (a tag, a branch, a commit), or the
# pin before the last `make vendor` (so CI checks the latest contract change it shipped).
PREVIOUS_PIN = $(shell git rev-parse "$$(git log --format=%H -n 2 -- producer/celery_tasks \
	| tail -n 1):producer/celery_tasks" 2>/dev/null)

check-contracts: install ## compare the pinned contracts; diff celery_tasks/ with BASE or the last pin before
	$(PY) scripts/check-contracts.py
	$(PY) scripts/docs-contracts.py --check
	$(PY) -m celery_tasks diff $(or $(BASE),$(PREVIOUS_PIN),HEAD)

export: ## write the three standalone repos (bare) to DEST=folder
	bash scripts/export.sh "$(DEST)"

env: ## create .env, or add the keys it lacks, from .env.example (random passwords)
	@bash scripts/make-env.sh

up: init env ## build, start RabbitMQ (CLUSTER=1: three nodes), a worker per queue (MONITORING=1: Prometheus, Flower), wait
	CONSUMER_CELERY_TASKS_COMMIT=$$(git -C consumer/celery_tasks rev-parse --short=12 HEAD) \
	PRODUCER_CELERY_TASKS_COMMIT=$$(git -C producer/celery_tasks rev-parse --short=12 HEAD) \
		$(STACK) --profile tools build
	$(STACK) up -d --remove-orphans
	COMPOSE="$(STACK)" bash scripts/compose-wait.sh

down: env ## stop and remove the stack, either kind (VOLUMES=1 also drops RabbitMQ's data)
	$(COMPOSE) -f docker-compose.cluster.yml --profile tools --profile monitoring down \
		--remove-orphans $(if $(filter 1 yes true,$(VOLUMES)),--volumes)
	$(COMPOSE) --profile tools --profile monitoring down --remove-orphans \
		$(if $(filter 1 yes true,$(VOLUMES)),--volumes)

logs: ## the stack's recent logs (SERVICE=name for one service; CLUSTER=1 for the cluster)
	$(STACK) logs --tail=200 $(SERVICE)

ps: ## the stack's containers and their health (CLUSTER=1 for the cluster)
	$(STACK) ps

produce: env ## run the producer service once with ARGS (CLUSTER=1 on the cluster)
	$(STACK) run --rm $(TTY_FLAG) producer $(ARGS)

engine: ## hosts without Docker or a registry: a private engine plus local base images
	bash docker/engine.sh start $(ENGINE_DIR)
	DOCKER_HOST=unix://$(ENGINE_DIR)/docker.sock bash docker/build-stand-ins.sh --also-tag-official
	@echo "make's targets use it while it runs; for docker commands of your own: export DOCKER_HOST=unix://$(ENGINE_DIR)/docker.sock"

engine-stop: ## stop the private engine started by `make engine`
	bash docker/engine.sh stop $(ENGINE_DIR)

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
