# The two commands of the README: `make demo` and `make test`. Each sets itself up.
# Also: `make docs` (the documentation site, docs/_build/html), `make install-check`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# `make test` builds the site with warnings as errors
SPHINXOPTS ?=

.PHONY: demo test lint docs install-check system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,docs]"
	touch $@

system-deps:
	bash tests/install-system-deps.sh

demo: $(VENV)/.installed
	$(VENV)/bin/xsits demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check xsits tests benchmarks docs
	$(VENV)/bin/lint-imports

# the site: pages in docs/, the API from the docstrings, the notebooks executed (cached)
docs: $(VENV)/.installed
	$(VENV)/bin/sphinx-build -b html -q $(SPHINXOPTS) docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# the wheel and sdist a user installs, in a fresh venv outside the clone
install-check: $(VENV)/.installed
	$(PY) tests/install_check.py

test: $(VENV)/.installed system-deps
	$(VENV)/bin/ruff check xsits tests benchmarks docs
	$(VENV)/bin/lint-imports
	$(MAKE) docs SPHINXOPTS="-W --keep-going"
	$(PY) tests/install_check.py
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules xsits
	$(PY) -m pytest -q -p no:cacheprovider
