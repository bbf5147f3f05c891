# Every target creates its own virtual environment and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo serve test test-loaded lint typecheck check bench clean

# Installing prints what it does: one line per package pip collects, no progress bars.
$(STAMP): pyproject.toml constraints.txt
	@echo "==> creating the virtual environment $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> installing rspp with the offline speech engines and the LiveKit SDKs (first run: a minute or two)"
	$(BIN)/pip install --progress-bar off -c constraints.txt --upgrade pip
	$(BIN)/pip install --progress-bar off -c constraints.txt -e '.[dev,speech,livekit]'
	@touch $(STAMP)
	@echo "==> installed; $(BIN)/rspp --help lists the commands"

venv: $(STAMP)

DEMO_OUT ?= out/demo

## demo: the main job, live: `rspp serve` (embedded: runtime + control plane on SQLite) starts,
## `rspp talk` speaks a question to it over WebSocket (espeak-ng -> pocketsphinx -> local
## responder -> espeak-ng) and prints transcript, reply and the per-turn latency table, the
## server drains and stops; the served session's timeline is validated and its gates reported.
demo: $(STAMP)
	@mkdir -p $(DEMO_OUT)
	@echo "==> 1/5 lint the pipeline spec"
	$(BIN)/rspp lint --strict pipelines/examples/voice_assistant.yaml
	@echo "==> 2/5 speak the question with espeak-ng"
	$(BIN)/rspp say "what is the weather like today" -o $(DEMO_OUT)/question.wav
	@echo "==> 3/5 start rspp serve, talk to it with rspp talk (real time), stop it"
	tools/demo_live.sh $(BIN) $(DEMO_OUT) pipelines/examples/voice_assistant.yaml
	@echo "==> 4/5 validate every record of the served session's timeline against the wire contract"
	$(BIN)/rspp contracts validate $(DEMO_OUT)/timeline.jsonl
	@echo "==> 5/5 the seven MVP quality gates of this session"
	$(BIN)/rspp slo report $(DEMO_OUT)/timeline.jsonl
	@echo "==> keep a server running: make serve (http://127.0.0.1:$(PORT)); open that URL to talk"
	@echo "    from the browser page, or: rspp talk --server http://127.0.0.1:$(PORT) --input Q.wav"
	@echo "    (with RSPP_API_KEY set to the api key rspp serve prints)"

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

## test: static checks then the whole test suite, in 4 workers (most tests wait on
## real-time audio and subprocesses, not the CPU; a module stays on one worker)
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q -n 4 --dist loadfile

## test-loaded: the integration and e2e suites with `stress-ng --cpu 2` beside them
## (installed with apt-get when missing and root; stopped afterwards whatever happens)
test-loaded: $(STAMP)
	tools/test_loaded.sh $(BIN)/pytest

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b --quick; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
