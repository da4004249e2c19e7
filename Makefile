# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
RUN_DIR := runs/smoke-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test test-slow bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[sim,dev,learn]'
	touch $@

install: $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/edgeswarm sim run configs/sim/smoke.toml --out $(RUN_DIR)

test: $(INSTALLED)
	$(PY) -m pytest -q

test-slow: $(INSTALLED)
	$(PY) -m pytest -q -m slow

bench: $(INSTALLED)
	$(PY) benchmarks/sim_scale.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
