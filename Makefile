# Everything runs inside .venv, created on first use from nothing but python3 and pip.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck docs check compat compat-install faults soak bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet --editable . --group dev
	touch $(STAMP)

## The README's demo: a SQLite job queue in demo.sqlite3, worked by slow jobs. Stop it with
## Ctrl+C or `kill -TERM <pid>`, then run it again: it carries on where it stopped.
demo: $(STAMP)
	@echo "The jobs live in demo.sqlite3: stop with Ctrl+C, run 'make demo' again to carry on,"
	@echo "or delete demo.sqlite3* to start over."
	$(PY) examples/sqlite_jobs.py --db demo.sqlite3 --seed 40 --work 1

## How many tests run at once (pytest-xdist workers). Most tests wait on a child program
## (a signal, a grace period), so twice as many as there are cores keeps them busy.
TEST_WORKERS ?= $(shell echo $$(( 2 * $$(nproc 2>/dev/null || echo 1) )))

## The whole test suite on asyncio, asyncio+uvloop and trio, with branch coverage
## (subprocesses included: the xdist workers and the child programs) and the coverage gate.
test: $(STAMP)
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest -n $(TEST_WORKERS)
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

## The suite (no coverage) on every other supported Python that pyenv has here. One that
## is missing is skipped, except where CI is set: there it fails the run.
COMPAT_PYTHONS ?= 3.10 3.12 3.13
COMPAT_STAMPS := $(COMPAT_PYTHONS:%=.venv-%/.installed-stamp)

.venv-%/.installed-stamp: pyproject.toml
	@py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$*.*/bin/python 2>/dev/null | tail -n 1); \
	if [ -z "$$py" ]; then \
	  if [ -n "$${CI:-}" ]; then echo "== Python $*: not installed here, and CI needs it"; exit 1; fi; \
	  echo "== Python $*: not installed here, skipped"; exit 0; \
	fi; \
	echo "== Python $*: installing into .venv-$* ($$py)"; \
	$$py -m venv .venv-$* && \
	.venv-$*/bin/python -m pip install --quiet --upgrade "pip>=25.1" && \
	.venv-$*/bin/python -m pip install --quiet --editable . --group test && \
	touch $@

## Only the installs: `make -j 3 compat-install` does them side by side.
compat-install: $(COMPAT_STAMPS)

compat: compat-install
	@for v in $(COMPAT_PYTHONS); do \
	  [ -e .venv-$$v/.installed-stamp ] || continue; \
	  echo "== Python $$v: the suite"; \
	  .venv-$$v/bin/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) || exit 1; \
	done

## The full fault-injection matrix: 480 cases, every trigger at every moment under every
## misbehaviour, on each backend (about 10 min on 2 cores). `make test` runs 40 of them.
faults: $(STAMP)
	GA_FAULTS=full $(PY) -m pytest tests/end_to_end/test_faults.py -q -p no:cacheprovider

## The soak: the demo's job queue stopped by SIGTERM or SIGINT at 200 random moments on
## each backend, restarted each time; at the end every job must be done exactly once
## (about 4 min on 2 cores). `make test` runs 18 rounds. SOAK_ARGS="--seed N" replays one.
SOAK_ARGS ?=
soak: $(STAMP)
	$(PY) -m tests.support.soak --rounds 200 $(SOAK_ARGS)

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --group bench
	touch $(BENCH_STAMP)

## Every benchmark in one run (about 25 min on 2 cores): exit latency against bare anyio,
## asyncio.run, aiorun and aiomisc; import, start-up, idle CPU, memory; drain()/in_flight().
## Writes benchmarks/results/latest.json, docs/img/benchmarks.png and the Markdown below.
## Then how each runner behaves on SIGTERM, Ctrl+C and faults (about 2 min).
## BENCH_BASELINE=REV (a commit, branch or tag; empty: none) also measures graceful_async as
## it was at REV in the same run, interleaved, and the report's "Against the baseline" says
## which cells are more than 2% slower than at REV (the run takes about 40% longer).
BENCH_BASELINE ?=
BENCH_BASELINE_ARGS := $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE))
bench: $(BENCH_STAMP)
	$(PY) -m benchmarks run --markdown benchmarks/results/latest.md $(BENCH_BASELINE_ARGS)
	$(PY) -m benchmarks behaviour --markdown benchmarks/results/behaviour.md

## The same in about 2 minutes, as a smoke test; its numbers are noisy. BENCH_BASELINE too.
bench-quick: $(BENCH_STAMP)
	$(PY) -m benchmarks run --quick $(BENCH_BASELINE_ARGS)

clean:
	rm -rf $(VENV) .venv-3.* site .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
	rm -f demo.sqlite3 demo.sqlite3-* demo.sqlite3.lock
