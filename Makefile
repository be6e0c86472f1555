# Two commands do all set-up on a fresh machine:
#   make study   creates .venv, installs the pinned set, runs the main job
#   make test    creates/uses .venv and runs the tests
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: study test test-fast bench tracking-server clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

study: $(STAMP)
	$(BIN)/study run search_spaces/quickstart.yaml --resume

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=10

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/data_path.py

# MLflow tracking server on 127.0.0.1:$(MLFLOW_PORT): SQLite backend, artifacts served from mlartifacts/
MLFLOW_PORT ?= 5000
tracking-server: $(STAMP)
	$(BIN)/study tracking-server --port $(MLFLOW_PORT) --backend-store-uri sqlite:///mlflow-server.db \
		--artifacts-destination mlartifacts

clean:
	rm -rf $(VENV) .pytest_cache
