# `make run` and `make test` work on a fresh clone: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_VERSION := 1.75.0

.PHONY: help install run test lint format proto clean bench bench-quick

help:
	@echo "make run      start the ingestor (127.0.0.1:50051) and the API (http://127.0.0.1:8000)"
	@echo "make test     lint and run the whole test suite"
	@echo "make lint     ruff and buf lint"
	@echo "make proto    regenerate ingestor/v1 from proto/"
	@echo "make bench    the project at 10k to 10M readings next to a naive baseline and the floor"
	@echo "make bench-quick  the same without N = 10M"

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[function,ingestor,dev]'
	touch $@

install: $(INSTALLED)

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION)

run: $(INSTALLED)
	$(BIN)/python scripts/run_local.py

proto: $(INSTALLED)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/ingestor/v1/ingestor.proto

lint: $(INSTALLED) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd proto && ../$(BUF) lint

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	$(BIN)/python -m bench.run

bench-quick: $(INSTALLED)
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache *.egg-info
