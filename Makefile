# Every target creates its own virtual environment and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo serve test test-loaded lint typecheck check bench clean

# Installing prints what it does: one line per package pip collects, no progress bars.
$(STAMP): pyproject.toml
	@echo "==> creating the virtual environment $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> installing rspp with the offline speech engines and the LiveKit SDKs (first run: a minute or two)"
	$(BIN)/pip install --progress-bar off --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[dev,speech,livekit]'
	@touch $(STAMP)
	@echo "==> installed; $(BIN)/rspp --help lists the commands"

venv: $(STAMP)

DEMO_OUT ?= out/demo

## demo: the main job on the embedded default: the offline voice assistant answers
## a spoken question (espeak-ng -> pocketsphinx -> local responder -> espeak-ng),
## then the recorded timeline is validated and its quality gates are reported.
demo: $(STAMP)
	@mkdir -p $(DEMO_OUT)
	@echo "==> 1/5 lint the pipeline spec"
	$(BIN)/rspp lint --strict pipelines/examples/voice_assistant.yaml
	@echo "==> 2/5 speak the question with espeak-ng"
	$(BIN)/rspp say "what is the weather like today" -o $(DEMO_OUT)/question.wav
	@echo "==> 3/5 stream it through the offline assistant in real time"
	$(BIN)/rspp run pipelines/examples/voice_assistant.yaml --input $(DEMO_OUT)/question.wav \
		--output $(DEMO_OUT)/reply.wav --timeline $(DEMO_OUT)/timeline.jsonl --real-time
	@echo "==> 4/5 validate every timeline record against the wire contract"
	$(BIN)/rspp contracts validate $(DEMO_OUT)/timeline.jsonl
	@echo "==> 5/5 the seven MVP quality gates of this run"
	$(BIN)/rspp slo report $(DEMO_OUT)/timeline.jsonl

SPEC ?= pipelines/examples/voice_assistant.yaml
PORT ?= 8800

## serve: keep a runtime running (embedded control plane on SQLite) on http://127.0.0.1:$(PORT);
## Ctrl-C drains and stops it. Talk to it with `rspp talk` or the browser page.
serve: $(STAMP)
	$(BIN)/rspp serve $(SPEC) --port $(PORT)

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

## test-loaded: the integration and e2e suites with `stress-ng --cpu 2` beside them
## (installed with apt-get when missing and root; stopped afterwards whatever happens)
test-loaded: $(STAMP)
	tools/test_loaded.sh $(BIN)/pytest

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b --quick; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
