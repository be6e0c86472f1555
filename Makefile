# Two commands do all set-up on a fresh machine:
#   make study   creates .venv, installs the pinned set, runs the main job
#   make test    creates/uses .venv and runs the tests
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: study test test-fast tools bench tracking-server clean
# System tools the tests drive, as command:Debian package: chromium (browser tests), docker-compose
# (validates docker/compose.yaml) and PostgreSQL's server (Optuna's search.storage, the driver-scale
# benchmark). `make test` installs the missing ones (as root, or with passwordless sudo);
# STUDY_ALLOW_MISSING_TOOLS=1 skips the tests that need them instead.
TOOLS := chromium:chromium docker-compose:docker-compose pg_ctlcluster:postgresql

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

study: $(STAMP)
	$(BIN)/study run search_spaces/quickstart.yaml --resume

test: $(STAMP) tools
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=10

tools:
	@missing=""; for t in $(TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -z "$$missing" ] || [ "$$STUDY_ALLOW_MISSING_TOOLS" = 1 ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; \
	else echo "make test: the tests drive$$missing, which are missing and cannot be installed without root:" \
	  "apt-get install$$missing (or STUDY_ALLOW_MISSING_TOOLS=1 to skip those tests)" >&2; exit 1; fi; \
	echo "make test: installing$$missing (Debian packages) for the browser and compose tests"; \
	$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing

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
