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
	$(VENV)/bin/pip install --quiet -e ".[test]"

run: install
	$(VENV)/bin/wasla run

test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

# Known vulnerabilities in the installed dependencies (PyPI's advisory data); CI runs it after the tests.
audit: install-test
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off

bench: install
	$(VENV)/bin/python bench/pipeline.py
