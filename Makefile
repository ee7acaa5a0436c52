# Two commands: `make run` (install + start the portal on the embedded default) and
# `make test` (install + the whole suite against the local PostgreSQL and Redis).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
CHECK_PATHS := firezone_site accounts policies gateways agents tests benchmarks manage.py

.PHONY: run test setup install install-dev lint typecheck checks pytest clean fuzz

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap --url http://$(HOST):$(PORT)
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

lint: install-dev
	$(VENV)/bin/ruff check $(CHECK_PATHS)
	$(VENV)/bin/ruff format --check $(CHECK_PATHS)
	$(VENV)/bin/lint-imports

typecheck: install-dev
	$(VENV)/bin/mypy firezone_site accounts policies gateways agents

checks: install-dev
	FZ_TESTING=1 $(PY) manage.py makemigrations --check --dry-run
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/test SECRET_KEY=$$($(PY) -c 'import secrets;print(secrets.token_urlsafe(50))') \
	  ALLOWED_HOSTS=portal.example.com REDIS_URL=redis://127.0.0.1:6379/0 DEBUG=0 \
	  $(PY) manage.py check --deploy --fail-level WARNING

pytest: install-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The machine's part (as root: missing apt packages; PostgreSQL and Redis started if down).
setup:
	.ci/setup

test: setup lint typecheck checks pytest

clean:
	rm -rf $(VENV) var

# Coverage-guided fuzzing (atheris) of every target in tests/fuzz/targets for FUZZ_SECONDS each;
# prints JSON figures. `make test` replays the committed corpus without atheris.
FUZZ_SECONDS ?= 30

$(VENV)/.installed-fuzz: pyproject.toml $(VENV)/.installed-dev
	$(PIP) install --quiet -e '.[fuzz]'
	touch $@

fuzz: $(VENV)/.installed-fuzz
	@$(PY) -m tests.fuzz.run --seconds $(FUZZ_SECONDS)
