# The two set-up commands: `make demo` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Tandem needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/tandem demo

test: $(VENV)/.installed-test
	$(BIN)/ruff check tandem
	$(BIN)/ruff format --check tandem
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/pip install -q -c constraints.txt -e '.[test,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/world.py
	$(BIN)/python bench/psi.py
	$(BIN)/python bench/secureboost.py
	$(BIN)/python bench/scorecard.py
	$(BIN)/python bench/application_file.py
	$(BIN)/python bench/world_gain.py
	$(BIN)/python bench/decide.py

clean:
	rm -rf $(VENV) demo-world .pytest_cache .hypothesis .mypy_cache .ruff_cache
