# The two commands of the README: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

system-deps:
	bash tests/install-system-deps.sh

demo: $(VENV)/.installed
	$(VENV)/bin/xsits demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check xsits tests benchmarks
	$(VENV)/bin/lint-imports

test: $(VENV)/.installed system-deps
	$(VENV)/bin/ruff check xsits tests benchmarks
	$(PY) -m pytest -q -p no:cacheprovider
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules xsits
	$(VENV)/bin/lint-imports
