# Every habit of the project. `make help` lists them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: help setup demo test test-fast lint typecheck bench bench-fast bench-batching bench-log bench-watch bench-shadow bench-stream bench-features bench-batch services browser bench-ui clean bench-overload bench-soak

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install Modelport with every extra

demo: $(STAMP) ## Train example models, register, deploy, serve on 127.0.0.1:$(PORT)
	$(BIN)/modelport --home .modelport demo --workdir demo --port $(PORT)

services: ## Start PostgreSQL and Redis if they are down (fails if they cannot start)
	scripts/services.sh

browser: ## Install Debian's chromium and chromium-driver if missing (dashboard tests)
	scripts/browser.sh

test: $(STAMP) services browser ## Run the whole test suite
	$(BIN)/pytest -n 2 -q

test-fast: $(STAMP) ## Unit tests only
	$(BIN)/pytest -q tests/unit

lint: $(STAMP) ## ruff
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP) ## mypy on src
	$(BIN)/mypy

bench: $(STAMP) ## Serving benchmark: Modelport vs plain FastAPI, same run
	$(BIN)/python bench/serve_bench.py

bench-batching: $(STAMP) ## Batching settings swept live on one server (how defaults were chosen)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/batching_sweep.py

bench-fast: $(STAMP) ## Fast-path benchmark under wrk vs 3 baselines (~14 min; ARGS=--quick ~4)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/fast_bench.py $(ARGS)

bench-features: $(STAMP) ## Online feature lookups from Redis, enrichment vs none (~2 min; ARGS=--quick)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	cd bench && ../$(BIN)/python features_bench.py $(ARGS)

bench-log: $(STAMP) ## Prediction log on vs off under wrk, same run (~6 min; ARGS=--quick ~2)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/log_bench.py $(ARGS)

bench-watch: $(STAMP) ## A watch round's traffic reads, footer summaries vs rows (~90 s; ARGS=--quick ~15 s)
	cd bench && ../$(BIN)/python watch_bench.py $(ARGS)

bench-shadow: $(STAMP) ## Live latency with no / a 2 s-sleeping / a raising shadow (~3 min; ARGS=--quick ~1)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/shadow_bench.py $(ARGS)

bench-stream: $(STAMP) services ## Stream ingestion into Redis vs bare XREADGROUP+XACK, same run (~1 min)
	$(BIN)/python bench/stream_bench.py $(ARGS)

bench-batch: $(STAMP) ## Batch predict on 2M Parquet rows vs the model's own one call, same run (~1 min)
	$(BIN)/python bench/batch_bench.py $(ARGS)

bench-ui: $(STAMP) browser ## Dashboard overview load time, 50 endpoints and a week of log, vs a static page
	$(BIN)/python bench/ui_bench.py $(ARGS)

bench-overload: $(STAMP) ## Shedding at 3x capacity, open loop: admitted/503/health latency vs baseline (~1 min; ARGS=--rounds 3)
	$(BIN)/python bench/overload_bench.py $(ARGS)

bench-soak: $(STAMP) ## 5 min at 70% of capacity: server RSS/PSS at start and end (ARGS=--seconds N)
	$(BIN)/python bench/soak_bench.py $(ARGS)

clean: ## Remove demo state
	rm -rf .modelport demo
