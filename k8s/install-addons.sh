#!/usr/bin/env bash
# Install the dev add-ons into the current kube context (the kind cluster from `make kind-up`):
#   KEDA (namespace keda), from its Helm chart, pinned to the version whose CRDs the chart
#   tests validate against; and an OpenTelemetry collector that forwards traces to Jaeger
#   (namespace observability, k8s/addons/observability.yaml).
# Needs kubectl and helm (HELM=/path/to/helm to pick one) and access to the KEDA chart repository.
set -euo pipefail

HELM=${HELM:-helm}
KEDA_VERSION=${KEDA_VERSION:-2.20.0}
here=$(cd "$(dirname "$0")" && pwd)

echo "== KEDA $KEDA_VERSION"
"$HELM" repo add kedacore https://kedacore.github.io/charts --force-update >/dev/null
"$HELM" upgrade --install keda kedacore/keda --namespace keda --create-namespace \
  --version "$KEDA_VERSION" --wait --timeout 5m

echo "== OpenTelemetry collector and Jaeger"
kubectl apply -f "$here/addons/observability.yaml"
kubectl -n observability rollout status deployment/otel-collector --timeout=180s
kubectl -n observability rollout status deployment/jaeger --timeout=180s

cat <<'DONE'
Add-ons ready.
  Jaeger UI: kubectl -n observability port-forward svc/jaeger 16686:16686, then http://localhost:16686
  KEDA:      kubectl get scaledobjects -A
DONE
