# Two commands for a newcomer: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv

.PHONY: run test install install-test lint bench audit

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

install: $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e .

install-test: $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e ".[test]" -e examples/connectors/wasla-folder-store

run: install
	$(VENV)/bin/wasla run

test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# Known vulnerabilities in the installed dependencies (PyPI's advisory data); CI runs it after the tests.
# A package the advisory service could not answer for fails it too, unless OFFLINE=1 says the service is
# out of reach: then it passes on what it could audit and says how many packages it could not (tools/audit.py).
OFFLINE ?=
audit: install-test
	$(VENV)/bin/python tools/audit.py $(if $(filter 1 yes true,$(OFFLINE)),--offline)

bench: install
	$(VENV)/bin/python bench/pipeline.py
