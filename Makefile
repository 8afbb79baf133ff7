# yimen-lake — every target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-zones bench-week bench-full airflow clean

# Installed packages compiled to bytecode once: every import then reads a .pyc instead of
# compiling the source, also where PYTHONDONTWRITEBYTECODE keeps Python from caching it
# (8 s of a demo night on this machine)
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') >/dev/null
	touch $(STAMP)

# the repo's own modules, compiled where they changed (cheap when nothing did)
BYTECODE := $(BIN)/python -m compileall -q catalog dags etl masking simulator

## demo: set up, simulate the departments, run one night through Airflow, print a summary
demo: $(STAMP)
	@$(BYTECODE) >/dev/null
	$(BIN)/lake demo

## test: set up (incl. a private PostgreSQL server) and run the test suite
test: $(STAMP)
	scripts/test-postgres.sh start
	scripts/install-chromium.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## bench: simulate, extract, validate at ~1 million records (SCALE=1.0 for the full 8 million)
SCALE ?= 0.125
bench: $(STAMP)
	$(BIN)/python bench/bench_pipeline.py --scale $(SCALE)

## bench-zones: raw-zone write/read, folder protocol (main) against Iceberg tables, lake maintain
bench-zones: $(STAMP)
	$(BIN)/python bench/bench_zones.py --scale $(SCALE)

## bench-week: a first night and an incremental night end to end through `lake run`
## (per-task wall times, critical path, peak RSS/PSS of the process tree)
bench-week: $(STAMP)
	@$(BYTECODE) >/dev/null
	$(BIN)/python bench/bench_week.py --scale $(SCALE)

## bench-full: the same at full scale (8 million records; minutes, ~4 GiB: one at a time)
bench-full: $(STAMP)
	@$(BYTECODE) >/dev/null
	$(BIN)/python bench/bench_week.py --scale 1.0 --workdir var/bench-full

## airflow: the Airflow UI (airflow standalone) on http://localhost:8080 with the repo's config
airflow: $(STAMP)
	$(BIN)/lake airflow standalone

clean:
	rm -rf var
