# Offload: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
UV := python3 -m uv
# The CA bundle uv should trust (the system one), and a portable llama.cpp build (no -march=native,
# so a wheel built here runs on any x86-64 with AVX2, or any arm64: the x86 flags only on x86).
export SSL_CERT_FILE ?= /etc/ssl/certs/ca-certificates.crt
LLAMA_CPU_FLAGS := $(if $(filter x86_64,$(shell uname -m)),-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON)
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF $(LLAMA_CPU_FLAGS) -DLLAVA_BUILD=OFF
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The Kubernetes and benchmark targets. Included here, before the rules below, because a rule's
# prerequisites are expanded when make reads it: `test` needs K8S_TEST_PREREQS (and
# OBS_TEST_PREREQS: Prometheus, the Collector, Jaeger; S3_TEST_PREREQS) already defined.
include mk/kubernetes.mk mk/bench.mk mk/observability.mk mk/s3.mk mk/cluster.mk

.PHONY: help run test test-fast sync uv test-deps clean

help:
	@echo "make run    - run gateway, status, worker-ocr, worker-llm (+ embedded Redis) locally"
	@echo "make test   - run the whole test suite but the cluster suite (installs what it needs)"
	@echo "make test-cluster - the chart on a real Kubernetes API server with KEDA (needs Go; CI runs it too)"
	@echo "make bench  - run the benchmarks (BENCHMARKS.md)"
	@grep -hE '^## ' mk/*.mk 2>/dev/null | sed 's/^## /make /' || true

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv

# The workspace venv: every service, the dev tools, the in-process llama.cpp backend.
sync: $(VENV)/.synced
# A first sync compiles llama.cpp from source (llama-cpp-python has no CPU wheel on PyPI): about
# 6 minutes on 2 cores, during which uv prints nothing, so a line every 30 s says it is working.
$(VENV)/.synced: uv.lock pyproject.toml $(wildcard services/*/pyproject.toml clients/*/pyproject.toml) | uv
	@if ! $(PY) -c 'import llama_cpp' >/dev/null 2>&1; then \
	  echo "== first run: installing the workspace and compiling llama.cpp once (about 6 minutes on 2 cores)"; \
	  ( start=$$(date +%s); while sleep 30; do echo "   ... still building ($$(( $$(date +%s) - start )) s)"; done ) & \
	  ticker=$$!; trap 'kill $$ticker 2>/dev/null' EXIT; \
	  $(UV) sync --all-packages --all-groups --all-extras --frozen; \
	else $(UV) sync --all-packages --all-groups --all-extras --frozen; fi
	@touch $@

run: sync
	$(PY) scripts/run_local.py

# System packages the tests use for real: their own redis-server on a free port, and Debian's
# chromium for the dashboard tests (Playwright drives it; no browser download).
TEST_APT_PACKAGES := redis-server chromium
test-deps:
	@missing=""; for p in $(TEST_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

# The cluster suite runs last: on a fresh machine its Go builds get the longest head start
# (.ci/run starts them in the background), and it says plainly why when it cannot run.
test: sync test-deps $(K8S_TEST_PREREQS) $(OBS_TEST_PREREQS)
	$(VENV)/bin/pytest -m "not cluster"

# Everything but the suites marked slow or cluster (a quicker loop while developing).
test-fast: sync test-deps chart-tools $(OBS_TEST_PREREQS)
	$(VENV)/bin/pytest -m "not slow and not cluster"

clean:
	rm -rf .run .pytest_cache
