# Two entry points: `make demo` (the whole loop on a local Prometheus) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready

.PHONY: demo test lint system-deps clean

demo: $(READY)
	$(BIN)/openanomaly demo

test: $(READY) system-deps
	$(BIN)/python -m pytest

# Style, types, and the import rules of docs/architecture.md ([tool.importlinter]).
lint: $(READY)
	$(BIN)/ruff check openanomaly tests benchmarks
	$(BIN)/mypy openanomaly
	$(BIN)/lint-imports

# Prometheus and Redis for the tests, from Debian's packages, when they are missing.
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The CPU build of torch first, so the model packages do not pull a CUDA build.
$(READY): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(READY)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
