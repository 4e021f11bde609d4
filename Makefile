# Everything runs inside .venv, created on first use from nothing but python3 and pip.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck docs check bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet --editable . --group dev
	touch $(STAMP)

## Run the demo service; stop it with Ctrl+C or `kill -TERM <pid>`.
demo: $(STAMP)
	$(PY) examples/demo.py

## The whole test suite on asyncio, asyncio+uvloop and trio, with branch coverage
## (subprocesses included) and the coverage gate.
test: $(STAMP)
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest
	$(PY) -m coverage combine --quiet
	$(PY) -m coverage report

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

check: test lint typecheck docs

bench: $(STAMP)
	$(PY) benchmarks/latency.py

bench-quick: $(STAMP)
	$(PY) benchmarks/latency.py --quick

clean:
	rm -rf $(VENV) site .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
