# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# the core alone (`pip install .`, no extras) in a venv of its own, as a phone or a small box gets it
CORE_VENV ?= .venv-core
CORE_INSTALLED := $(CORE_VENV)/.installed
# and at the lowest release each core range allows (uv's lowest-direct resolution)
CORE_LOWEST_VENV ?= .venv-core-lowest
# a go-libp2p peer for the interop tests: go-libp2p-daemon, out of the hivemind wheel on PyPI
P2PD := build/p2pd/p2pd
TEST_TOOLS := 'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6.100'
TYPECHECK_TREE := build/typecheck
DOCS_TREE := build/docs-src
RUN_DIR := runs/smoke-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test docs lint typecheck test-core test-core-lowest test-slow test-loaded bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[sim,dev,learn]'
	touch $@

install: $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/edgeswarm sim run configs/sim/smoke.toml --out $(RUN_DIR)

# lint, types, the docs, the default suite, then the core install's own run: CI runs exactly this
test: lint typecheck docs $(INSTALLED) $(P2PD)
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-core test-core-lowest

$(P2PD): | $(PY)
	$(PY) tests/go_peer.py fetch

# the manual, strictly: a broken link, a missing page or a stale API reference fails it. mkdocstrings
# reads the layers under their installed names through a tree of links (edgeswarm/node -> node/)
docs: $(INSTALLED)
	rm -rf $(DOCS_TREE) && mkdir -p $(DOCS_TREE)/edgeswarm
	for layer in node protocols learning sim; do ln -s ../../../$$layer $(DOCS_TREE)/edgeswarm/$$layer; done
	ln -s ../../../sdk/__init__.py $(DOCS_TREE)/edgeswarm/__init__.py
	$(VENV)/bin/mkdocs build --strict  # not --quiet: it would hide the warnings strict counts

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy sees the layers under the names they are installed as (edgeswarm.node -> node/), and
# trio's own inline types ahead of the outdated trio-typing stubs that py-libp2p pulls in
typecheck: $(INSTALLED)
	rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)/edgeswarm
	for layer in node protocols learning sim; do ln -s ../../../$$layer $(TYPECHECK_TREE)/edgeswarm/$$layer; done
	ln -s "$$($(PY) -c 'import os, trio; print(os.path.dirname(trio.__file__))')" $(TYPECHECK_TREE)/trio
	cd $(TYPECHECK_TREE) && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml \
		--cache-dir ../mypy-cache --python-executable ../../$(PY) -p edgeswarm.protocols -p edgeswarm.node

$(CORE_INSTALLED): pyproject.toml
	rm -rf $(CORE_VENV)
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CORE_VENV)/bin/python -m pip install --quiet . $(TEST_TOOLS)
	touch $@

# the tests marked `core` against the core install (the newest releases its ranges allow)
test-core: $(CORE_INSTALLED)
	$(CORE_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall .
	$(CORE_VENV)/bin/python -m pytest -q -p no:cacheprovider -m core

# the same tests against the lower end of every core range: both ends of each range are tested
test-core-lowest: $(INSTALLED)
	rm -rf $(CORE_LOWEST_VENV)
	$(VENV)/bin/uv venv --quiet --python $(PYTHON) $(CORE_LOWEST_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(CORE_LOWEST_VENV)/bin/python --resolution lowest-direct . $(TEST_TOOLS)
	$(CORE_LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider -m core

test-slow: $(INSTALLED) $(P2PD)
	$(PY) -m pytest -q -m slow

# the default suite on one core that another process keeps busy: half the CPU, as a slower
# machine has (docs/install.md, Development)
test-loaded: $(INSTALLED) $(P2PD)
	taskset -c 0 sh -c 'while :; do :; done' & hog=$$!; \
	taskset -c 0 $(PY) -m pytest -q; status=$$?; kill $$hog; exit $$status

bench: $(INSTALLED)
	$(PY) benchmarks/sim_scale.py

clean:
	rm -rf $(VENV) $(CORE_VENV) $(CORE_LOWEST_VENV) build runs .pytest_cache .hypothesis
