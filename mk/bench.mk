# Benchmarks: `make bench` runs bench/ (python -m bench) and rewrites the tables of
# BENCHMARKS.md and the charts under docs/bench/. Included from the root Makefile, which
# defines VENV, PY, UV, SUDO and `sync`.
#
#   BENCH_ARGS   extra arguments, e.g. BENCH_ARGS="--sections worker,submit --rounds 5"
#   BENCH_TOOLS  where the peers' venv lives (outside the repository; pinned in bench/peers.txt)
#
# Debian tools: wrk (load generator), redis-tools (redis-benchmark), tesseract-ocr (the
# pytesseract baseline). The harness's smoke test (tests/bench) is part of `make test`, so
# those targets get the tools too.

BENCH_TOOLS ?= $(HOME)/.cache/offload/bench
BENCH_PEERS := $(BENCH_TOOLS)/peers
BENCH_ARGS  ?=

.PHONY: bench bench-tools bench-peers

bench: sync bench-tools bench-peers ## the benchmarks against Celery, RQ, arq, Dramatiq, taskiq (~15 min; BENCHMARKS.md)
	$(PY) -m bench --peers-bin $(BENCH_PEERS)/bin --doc BENCHMARKS.md $(BENCH_ARGS)

bench-tools: ## wrk, redis-benchmark, redis-server and Tesseract from Debian
	@command -v wrk >/dev/null && command -v redis-benchmark >/dev/null && command -v redis-server >/dev/null \
	  && command -v tesseract >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk redis-tools redis-server \
	    tesseract-ocr tesseract-ocr-eng >/dev/null; }

bench-peers: $(BENCH_PEERS)/.installed ## the peers' venv (RQ, arq, Dramatiq, taskiq)

$(BENCH_PEERS)/.installed: bench/peers.txt | uv
	$(UV) venv --quiet --python 3.11 $(BENCH_PEERS)
	$(UV) pip install --quiet --python $(BENCH_PEERS)/bin/python -r bench/peers.txt
	@touch $@

# The smoke test of the harness runs wrk and redis-benchmark.
test test-fast: bench-tools
