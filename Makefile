# Two entry points: `make demo` (the whole loop on a local Prometheus) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready
# The web UI's chart library and htmx, from the npm registry into the package's static files
# (not committed): the versions are pinned here.
VENDOR := openanomaly/entrypoints/web/static/vendor
ASSETS := $(VENDOR)/.ready
UPLOT := uplot@1.6.32
HTMX := htmx.org@2.0.11

.PHONY: demo test lint system-deps assets clean

# The demo, then Prometheus and the web UI on its data until Ctrl-C.
demo: $(READY) $(ASSETS)
	$(BIN)/openanomaly demo --keep-running

test: $(READY) $(ASSETS) system-deps
	$(BIN)/python -m pytest

assets: $(ASSETS)

$(ASSETS): Makefile
	@command -v npm >/dev/null || { echo "installing Debian package: npm"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }
	npm install --silent --no-save --no-package-lock --prefix .build/npm $(UPLOT) $(HTMX)
	mkdir -p $(VENDOR)
	cp .build/npm/node_modules/uplot/dist/uPlot.iife.min.js \
	  .build/npm/node_modules/uplot/dist/uPlot.min.css \
	  .build/npm/node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/
	touch $@

# Style, types, and the import rules of docs/architecture.md ([tool.importlinter]).
lint: $(READY)
	$(BIN)/ruff check openanomaly tests benchmarks
	$(BIN)/mypy openanomaly
	$(BIN)/lint-imports

# Prometheus, Redis and Chromium (the browser test) from Debian's packages when missing.
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .build $(VENDOR)
