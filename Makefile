# Every target creates its own virtual environment and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,speech]'
	touch $(STAMP)

venv: $(STAMP)

## demo: the main job on the embedded default (offline, no services needed)
demo: $(STAMP)
	$(BIN)/rspp lint --strict pipelines/examples/voice_assistant.yaml
	$(BIN)/rspp spec resolve pipelines/examples/voice_assistant.yaml

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

## test: static checks then the whole test suite
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b --quick; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
