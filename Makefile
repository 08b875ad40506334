# tfprune: `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test bench install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	@touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --out demo_output

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=10 tests

bench: $(BENCH_STAMP)
	$(PY) benchmarks/training_overhead.py
	$(PY) benchmarks/deploy_lenet.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
