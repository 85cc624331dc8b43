# Observability tools the telemetry tests run for real (tests/telemetry, docs/observability.md):
#   prometheus, promtool  Debian's package (2.42)
#   otelcol-offload       a minimal OpenTelemetry Collector made by the Collector Builder (ocb)
#                         from tests/telemetry/tools/otelcol/builder-config.yaml
#   jaeger                Jaeger v2 from its Go module (tests/telemetry/tools/jaeger/go.mod)
# Included from the root Makefile, which defines SUDO and `sync`.
#
# Go programs go into the Go tools cache shared with the cluster suite (GO_TOOLS, exported to the
# tests as OFFLOAD_GO_TOOLS): each at $(GO_TOOLS)/<name>-<version>/<name>, with a symlink
# $(GO_TOOLS)/bin/<name>. A version directory also carries a hash of its manifest, so a changed
# manifest builds anew and an unchanged one is never rebuilt. Without Go the builds are skipped
# with a message, and the suites that need them skip with the same reason.
# Measured on 2 cores (a cold Go cache, then all three): ~520 CPU-seconds, 2.2 GiB peak (Jaeger's
# link), +1.9 GB build cache and +1.3 GB modules; with the caches warm ~8 CPU-seconds.

GO         ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))
GO_TOOLS   ?= $(HOME)/.cache/offload/go-tools
export OFFLOAD_GO_TOOLS := $(GO_TOOLS)
# Builds share the 2 cores with whatever else runs: static, stripped, and at low priority.
GO_BUILD_ENV := PATH="$(dir $(GO)):$$PATH" CGO_ENABLED=0 nice -n 10

OBS_APT_PACKAGES := prometheus
OBS_DIR          := tests/telemetry/tools
manifest_hash     = $(shell cat $(1) | sha256sum | cut -c1-10)

# One release for every Collector module: Jaeger's (the manifest says why).
OTELCOL_VERSION  := v0.139.0
OTELCOL_MANIFEST := $(OBS_DIR)/otelcol/builder-config.yaml
OCB              := $(GO_TOOLS)/ocb-$(OTELCOL_VERSION)/ocb
OTELCOL          := $(GO_TOOLS)/otelcol-offload-$(OTELCOL_VERSION)-$(call manifest_hash,$(OTELCOL_MANIFEST))/otelcol-offload

# Jaeger v2 is tagged both v2.x and v1.x; its module path has no /v2, so Go knows it by the v1 tag.
JAEGER_MODULE    := $(OBS_DIR)/jaeger
JAEGER_VERSION   := $(shell awk '$$1 == "github.com/jaegertracing/jaeger" {print $$2}' $(JAEGER_MODULE)/go.mod)
JAEGER           := $(GO_TOOLS)/jaeger-$(JAEGER_VERSION)-$(call manifest_hash,$(JAEGER_MODULE)/go.sum)/jaeger

# For the root Makefile's `test`.
OBS_TEST_PREREQS := obs-tools

.PHONY: obs-tools obs-apt obs-go-tools dashboard

## Observability ------------------------------------------------------------------------------

obs-tools: obs-apt obs-go-tools ## Prometheus and promtool (Debian), the Collector and Jaeger (Go) for tests/telemetry

obs-apt:
	@dpkg -s $(OBS_APT_PACKAGES) >/dev/null 2>&1 || { echo "installing: $(OBS_APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	  --no-install-recommends $(OBS_APT_PACKAGES) >/dev/null; }

ifeq ($(GO),)
obs-go-tools:
	@echo "obs-go-tools: Go is not installed; the Collector and Jaeger are not built and their tests skip"
else
# Jaeger first: the Collector then reuses most of its build cache.
obs-go-tools: $(JAEGER) $(OTELCOL)
endif

$(OCB):
	@mkdir -p $(@D)
	GOBIN=$(@D) $(GO_BUILD_ENV) $(GO) install -trimpath -ldflags "-s -w" \
	  go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_VERSION)
	mv $(@D)/builder $@

# ocb writes the distribution's sources into ./dist (the manifest's output_path), fetches the
# modules and compiles; the sources are thrown away, the binary kept.
$(OTELCOL): | $(OCB)
	@echo "== building the OpenTelemetry Collector $(OTELCOL_VERSION) with ocb (after Jaeger: ~1 CPU-minute)"
	@mkdir -p $(@D) $(GO_TOOLS)/bin
	cd $(@D) && rm -rf dist && $(GO_BUILD_ENV) $(OCB) --config $(CURDIR)/$(OTELCOL_MANIFEST)
	mv $(@D)/dist/otelcol-offload $@ && rm -rf $(@D)/dist
	ln -sfn $@ $(GO_TOOLS)/bin/otelcol-offload
	$@ --version

$(JAEGER):
	@echo "== building Jaeger $(JAEGER_VERSION) (v2) from its Go module (cold: ~7.5 CPU-minutes, 2.2 GiB peak)"
	@mkdir -p $(@D) $(GO_TOOLS)/bin
	cd $(JAEGER_MODULE) && $(GO_BUILD_ENV) $(GO) build -trimpath -ldflags "-s -w" -o $@ \
	  github.com/jaegertracing/jaeger/cmd/jaeger
	ln -sfn $@ $(GO_TOOLS)/bin/jaeger
	$@ --help >/dev/null

dashboard: ## regenerate the Grafana dashboard and the docs' query table from k8s/grafana/queries.yaml
	$(VENV)/bin/python -m tests.telemetry.dashboard
