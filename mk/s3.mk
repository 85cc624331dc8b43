# A real S3-compatible server for the payload tests (tests/payloads): s3proxy, an S3 API server
# (its filesystem backend keeps objects as files), the jar from Maven Central, pinned and checked
# by SHA-256. Cached outside the repository like the Go tools (mk/cluster.mk):
# $(GO_TOOLS)/s3proxy-<version>/, with the launcher linked from $(GO_TOOLS)/bin/s3proxy.
#
# Why s3proxy: a cold install is one 55 MB download (seconds), where versitygw built from its
# Go module took 5 min here (134 CPU-s, 430 MB of build cache); and it checks what our client
# relies on, as versitygw does: SigV4, x-amz-content-sha256, x-amz-checksum-sha256, Content-MD5,
# NoSuchKey. It needs Java 17+: Debian's JRE is installed if there is none. Without Java, the
# target says so and the tests that need the server skip with that reason.
#
#   make s3-server   install (or find) s3proxy

GO_TOOLS        ?= $(HOME)/.cache/offload/go-tools
export OFFLOAD_GO_TOOLS := $(GO_TOOLS)
S3PROXY_VERSION := 4.1.0
S3PROXY_SHA256  := a4d025969aaf796616ed4b1e2491d87d455ce84bb28cb9db086b2e6aaa68b48d
S3PROXY_URL     := https://repo1.maven.org/maven2/org/gaul/s3proxy/$(S3PROXY_VERSION)/s3proxy-$(S3PROXY_VERSION)-jar-with-dependencies.jar
S3PROXY_DIR     := $(GO_TOOLS)/s3proxy-$(S3PROXY_VERSION)
S3PROXY         := $(GO_TOOLS)/bin/s3proxy
JAVA_APT_PACKAGE := openjdk-17-jre-headless

.PHONY: s3-server

s3-server: $(S3PROXY) ## s3proxy, the S3-compatible server the payload tests run (cached, pinned)

$(S3PROXY):
	@command -v java >/dev/null || { echo "s3-server: installing $(JAVA_APT_PACKAGE)"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    $(JAVA_APT_PACKAGE) >/dev/null; } || true; }
	@if ! command -v java >/dev/null; then \
	  echo "s3-server: SKIPPED: no Java 17+ (and $(JAVA_APT_PACKAGE) could not be installed); the tests"; \
	  echo "  against a real S3 server will skip. Install Java 17+ and run make s3-server."; \
	else \
	  mkdir -p $(S3PROXY_DIR) $(GO_TOOLS)/bin && \
	  python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
	    $(S3PROXY_URL) $(S3PROXY_DIR)/.s3proxy.jar.partial && \
	  echo "$(S3PROXY_SHA256)  $(S3PROXY_DIR)/.s3proxy.jar.partial" | sha256sum -c --quiet - && \
	  mv $(S3PROXY_DIR)/.s3proxy.jar.partial $(S3PROXY_DIR)/s3proxy.jar && \
	  printf '#!/bin/sh\nexec java -jar "$$(dirname "$$(readlink -f "$$0")")/s3proxy.jar" "$$@"\n' \
	    > $(S3PROXY_DIR)/s3proxy && chmod 0755 $(S3PROXY_DIR)/s3proxy && \
	  ln -sfn $(S3PROXY_DIR)/s3proxy $@ && echo "s3-server: s3proxy $(S3PROXY_VERSION) at $@"; \
	fi

# The payload tests need the server.
test test-fast: s3-server
