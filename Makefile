# botkit developer entry points. Everything installs into .venv (see scripts/install.sh).
BOT ?= examples/faq-agent
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run install test test-all test-faults test-fast bench soak clean

## run: install botkit and serve the example FAQ agent at http://$(HOST):$(PORT)
run:
	scripts/install.sh all
	.venv/bin/botkit serve --bot $(BOT) --host $(HOST) --port $(PORT)

## install: install botkit with every optional part into .venv
install:
	scripts/install.sh all

## test: install the test dependencies and run the suite, fault-injection tests included (what CI
## runs; only the slow full-size model training is left to test-all)
test:
	scripts/test.sh -m "not slow"

## test-faults: the fault-injection suite (real worker processes, PostgreSQL, chroma run)
test-faults:
	scripts/test.sh -m faults

## test-all: everything, including slow tests (full classifier training: many minutes on CPU)
test-all:
	scripts/test.sh

## test-fast: the suite without slow, browser and fault-injection tests
test-fast:
	scripts/test.sh -m "not slow and not browser and not faults" -x -q

## bench: run the benchmarks (not part of the tests; the 30-minute soak is `make soak`)
bench:
	for f in benchmarks/bench_*.py; do [ "$$f" = benchmarks/bench_soak.py ] || .venv/bin/python $$f || exit 1; done

## soak: 30 minutes of steady load against two workers (see benchmarks/bench_soak.py)
soak:
	.venv/bin/python benchmarks/bench_soak.py

clean:
	rm -rf .venv .pytest_cache build *.egg-info examples/*/data
