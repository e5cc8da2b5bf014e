# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The deploy checks' tools (checkov, kubernetes-validate, kubectl): a venv of their own.
CHECKS := .venv-checkov
CHECKS_STAMP := $(CHECKS)/.installed

.PHONY: run test lint openapi client client-ts bench test-container clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(CHECKS_STAMP): deploy/checks/requirements.txt
	$(PYTHON) -m venv $(CHECKS)
	$(CHECKS)/bin/pip install --quiet --upgrade pip
	$(CHECKS)/bin/pip install --quiet --requirement deploy/checks/requirements.txt
	touch $(CHECKS_STAMP)

run: $(STAMP)  ## serve on 127.0.0.1:8000 with the embedded SQLite store under ./var/
	@echo "Tapeline: open http://127.0.0.1:$${TAPELINE_PORT:-8000}/ui/ (API docs at /docs); the terminal client is $(BIN)/tapeline (or run '. $(BIN)/activate' first)"
	@$(BIN)/tapeline serve

test: $(STAMP) $(CHECKS_STAMP)  ## the whole test suite: two processes, then the latency/CPU-share tests alone
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not serial" --durations=15
	$(BIN)/python -m pytest -m serial

lint: $(STAMP)
	$(BIN)/ruff check service tests bench examples
	$(BIN)/mypy service
	$(BIN)/lint-imports

openapi: $(STAMP)  ## regenerate openapi/openapi.json
	$(BIN)/tapeline openapi --output openapi/openapi.json

client: $(STAMP)  ## generate the Python client package into clients/python/ (pip install ./clients/python)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/openapi-python-client generate --path openapi/openapi.json \
		--config openapi/client.yaml --custom-template-path openapi/client-templates \
		--fail-on-warning --meta setup --output-path clients/python --overwrite

client-ts:  ## generate the TypeScript types package into clients/typescript/ (needs node + npm)
	npm ci --no-audit --no-fund
	npm run --silent types

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/compile.py
	$(BIN)/python bench/kinds.py
	$(BIN)/python bench/service.py
	$(BIN)/python bench/auth.py
	$(BIN)/python bench/ui.py

test-container:  ## build the image with buildah and drive it with podman (root, Debian)
	bash tests/container/run.sh

clean:
	rm -rf $(VENV) $(CHECKS) var .pytest_cache build *.egg-info
