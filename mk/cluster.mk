# The cluster suite (tests/cluster): a real Kubernetes control plane and KEDA on loopback, with
# the chart installed into it, and skaffold. Included from the root Makefile (VENV, SUDO, sync).
#
# Go tools are built from upstream Go modules pinned by our own go.mod files under
# tests/cluster/ (each explains why it exists) into a cache outside the repository, shared with
# mk/observability.mk:  $(GO_TOOLS)/<name>-<version>/<name>, symlinked from $(GO_TOOLS)/bin.
# A cold build is ~25 CPU-minutes on 2 cores (kube-apiserver and keda-operator dominate); with
# the binaries present nothing is rebuilt. tests/cluster/gobuild.py builds niced and prints
# progress. `.ci/run` starts `cluster-tools` in the background before the venv so both overlap.
#
#   make cluster-tools   build (or find) the binaries
#   make test-cluster    the cluster suite (~3 min with the binaries built)

GO             ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))
GO_TOOLS       ?= $(HOME)/.cache/offload/go-tools
export OFFLOAD_GO_TOOLS := $(GO_TOOLS)
GOBUILD        := python3 tests/cluster/gobuild.py --out $(GO_TOOLS)
CLUSTER_MODS   := tests/cluster
# $(call go-require,MODULE-DIR,PATH): the version of PATH that our go.mod in MODULE-DIR requires.
go-require      = $(shell awk '$$1=="require"{$$1=""; $$0=$$0} $$1=="$(2)"{print $$2; exit}' $(CLUSTER_MODS)/$(1)/go.mod)
KUBE_VERSION   := $(call go-require,controlplane,k8s.io/kubernetes)
# etcd (the apiserver's store), openssl (the fixture's certificates), redis-server (the queues
# KEDA reads) from Debian.
CLUSTER_APT_PACKAGES := etcd-server openssl redis-server

.PHONY: cluster-tools cluster-tools-background cluster-apt controlplane-tools keda-tools skaffold-tool \
        test-cluster test-cluster-if-go

cluster-tools: controlplane-tools keda-tools skaffold-tool ## build kube-apiserver/-controller-manager/-scheduler, KEDA and skaffold from Go modules (cached)

controlplane-tools:
	$(GOBUILD) --module $(CLUSTER_MODS)/controlplane --require k8s.io/kubernetes \
	  --tool k8s.io/kubernetes/cmd/kube-apiserver=kube-apiserver \
	  --tool k8s.io/kubernetes/cmd/kube-controller-manager=kube-controller-manager \
	  --tool k8s.io/kubernetes/cmd/kube-scheduler=kube-scheduler \
	  --x 'k8s.io/component-base/version.gitVersion={version}' \
	  --x 'k8s.io/component-base/version.gitTreeState=clean' \
	  --x 'k8s.io/component-base/version.gitCommit={commit}' \
	  --x 'k8s.io/component-base/version.gitMajor=1' \
	  --x 'k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION)))'

keda-tools:
	$(GOBUILD) --module $(CLUSTER_MODS)/keda --require github.com/kedacore/keda/v2 \
	  --tool github.com/kedacore/keda/v2/cmd/operator=keda-operator \
	  --tool github.com/kedacore/keda/v2/cmd/adapter=keda-adapter \
	  --tool github.com/kedacore/keda/v2/cmd/webhooks=keda-webhooks \
	  --x 'github.com/kedacore/keda/v2/version.Version={bare}' \
	  --x 'github.com/kedacore/keda/v2/version.GitCommit={commit}' \
	  --copy config/crd/bases,config/webhooks,config/metrics-server=keda-config

skaffold-tool:
	$(GOBUILD) --module $(CLUSTER_MODS)/skaffold --require github.com/GoogleContainerTools/skaffold/v2 \
	  --tool github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold=skaffold \
	  --x 'github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version={version}' \
	  --x 'github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.gitCommit={commit}'

# CI starts the Go builds first, so that they overlap the venv and the other suites (they run
# niced); `make test-cluster` later waits for whatever is still building, through the build lock.
cluster-tools-background:
	@if [ -n "$(GO)" ]; then mkdir -p $(GO_TOOLS) && \
	  echo "cluster-tools: building in the background, niced; log: $(GO_TOOLS)/background-build.log" && \
	  { nohup $(MAKE) --no-print-directory cluster-tools > $(GO_TOOLS)/background-build.log 2>&1 & }; \
	else echo "cluster-tools: no Go toolchain, nothing to build"; fi

cluster-apt:
	@missing=""; for p in $(CLUSTER_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

test-cluster: sync chart-tools image-base cluster-apt cluster-tools ## the chart on a real API server with KEDA, and skaffold (needs Go)
	$(VENV)/bin/pytest tests/cluster -m cluster

# `make test` runs the cluster suite last, and only where Go can build it.
test-cluster-if-go:
	@if [ -z "$(GO)" ]; then \
	  echo "test-cluster: SKIPPED: no Go toolchain (go not on PATH, no /usr/local/go/bin/go). The cluster suite"; \
	  echo "  builds kube-apiserver, KEDA and skaffold from Go modules; install Go 1.25+ and run make test-cluster."; \
	else $(MAKE) --no-print-directory test-cluster; fi
