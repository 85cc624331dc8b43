"""End to end on a real cluster (`make kind-e2e`): after skaffold installed the chart, the
rollouts finish, each worker's ScaledObject is Ready with its HPA, and `helm test` takes a job
from submission to success (with workers at zero replicas, that also proves KEDA woke one up).

Skips unless `make kind-e2e` found a cluster and installed the release (OFFLOAD_KIND_E2E=1).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.chart.chartkit import tool

pytestmark = pytest.mark.kind

RELEASE = os.environ.get("OFFLOAD_RELEASE", "offload")
NAMESPACE = os.environ.get("OFFLOAD_NAMESPACE", "offload")
PREFIX = RELEASE if "offload" in RELEASE else f"{RELEASE}-offload"
WORKERS = ("worker-ocr", "worker-llm")


@pytest.fixture(scope="module")
def kube():
    if os.environ.get("OFFLOAD_KIND_E2E") != "1":
        pytest.skip("needs a cluster with the release installed: run `make kind-e2e` (after `make kind-up`)")
    kubernetes = pytest.importorskip(
        "kubernetes", reason="the kubernetes client is not installed (it comes with the status service's dependencies)")
    try:
        kubernetes.config.load_kube_config(context=os.environ.get("OFFLOAD_KUBE_CONTEXT"))
        kubernetes.client.VersionApi().get_code()
    except Exception as exc:  # no kubeconfig, or the API server does not answer
        pytest.skip(f"no reachable cluster: {exc}")
    return kubernetes.client


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_every_deployment_rolls_out(kube) -> None:
    apps = kube.AppsV1Api()
    for service in ("gateway", "status", *WORKERS):
        name = f"{PREFIX}-{service}"

        def rolled_out(name: str = name) -> bool:
            d = apps.read_namespaced_deployment_status(name, NAMESPACE)
            want = d.spec.replicas or 0
            return (d.status.observed_generation or 0) >= d.metadata.generation and \
                (d.status.updated_replicas or 0) >= want and (d.status.available_replicas or 0) >= want
        _wait(rolled_out, 300, f"deployment {name} to roll out")
    sts = apps.read_namespaced_stateful_set_status(f"{PREFIX}-redis", NAMESPACE)
    assert (sts.status.ready_replicas or 0) == 1


def test_each_worker_has_a_ready_scaledobject_and_its_hpa(kube) -> None:
    custom, autoscaling = kube.CustomObjectsApi(), kube.AutoscalingV2Api()
    for service in WORKERS:
        name = f"{PREFIX}-{service}"

        def ready(name: str = name) -> bool:
            so = custom.get_namespaced_custom_object("keda.sh", "v1alpha1", NAMESPACE, "scaledobjects", name)
            conditions = {c["type"]: c["status"] for c in so.get("status", {}).get("conditions", [])}
            return conditions.get("Ready") == "True"
        _wait(ready, 180, f"ScaledObject {name} to be Ready")
        so = custom.get_namespaced_custom_object("keda.sh", "v1alpha1", NAMESPACE, "scaledobjects", name)
        assert so["spec"]["scaleTargetRef"]["name"] == name
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(so["status"]["hpaName"], NAMESPACE)
        assert hpa.spec.scale_target_ref.name == name
        assert hpa.spec.max_replicas == so["spec"]["maxReplicaCount"]


def test_helm_test_submits_a_job_and_it_succeeds(kube) -> None:
    helm = os.environ.get("OFFLOAD_HELM") or str(tool("helm"))
    result = subprocess.run([helm, "test", RELEASE, "-n", NAMESPACE, "--timeout", "10m", "--logs"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
