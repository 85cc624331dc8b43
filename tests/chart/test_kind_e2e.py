"""End to end on a real cluster (`make kind-e2e`): after skaffold installed the chart, the
rollouts finish, each worker's ScaledObject is Ready with its HPA, the status service may read
its own namespace's workers and nothing more, its /v1/queues shows them from inside the pod, and
`helm test` takes a job from submission to success (with workers at zero replicas, that also
proves KEDA woke one up).

The suite reads the cluster with the status service's own code (`offload_status.kube_state`,
`offload_status.cluster_view`), so "rolled out" and "ScaledObject ready" mean here what they
mean on the dashboard.

Skips unless `make kind-e2e` found a cluster and installed the release (OFFLOAD_KIND_E2E=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.chart.chartkit import tool

pytestmark = pytest.mark.kind

RELEASE = os.environ.get("OFFLOAD_RELEASE", "offload")
NAMESPACE = os.environ.get("OFFLOAD_NAMESPACE", "offload")
PREFIX = RELEASE if "offload" in RELEASE else f"{RELEASE}-offload"
WORKERS = ("worker-ocr", "worker-llm")


@pytest.fixture(scope="module")
def api_client():
    """An ApiClient for the kubeconfig context `make kind-e2e` names."""
    if os.environ.get("OFFLOAD_KIND_E2E") != "1":
        pytest.skip("needs a cluster with the release installed: run `make kind-e2e` (after `make kind-up`)")
    kubernetes = pytest.importorskip(
        "kubernetes", reason="the kubernetes client is not installed (it comes with the status service's dependencies)")
    try:
        client = kubernetes.config.new_client_from_config(context=os.environ.get("OFFLOAD_KUBE_CONTEXT"))
        kubernetes.client.VersionApi(client).get_code()
    except Exception as exc:  # no kubeconfig, or the API server does not answer
        pytest.skip(f"no reachable cluster: {exc}")
    return client


def _wait(probe: Callable[[], tuple[bool, Any]], timeout: float, what: str) -> Any:
    """Poll `probe` (done, what it saw) until done; the timeout message shows the last sight."""
    deadline = time.monotonic() + timeout
    while True:
        done, seen = probe()
        if done:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {seen}")
        time.sleep(2)


def test_every_deployment_rolls_out(api_client) -> None:
    from kubernetes.client import AppsV1Api
    from offload_status.kube_state import rollout_status

    apps = AppsV1Api(api_client)
    for service in ("gateway", "status", *WORKERS):
        name = f"{PREFIX}-{service}"

        def rolled_out(name: str = name) -> tuple[bool, str]:
            deployment = api_client.sanitize_for_serialization(apps.read_namespaced_deployment_status(name, NAMESPACE))
            return rollout_status(deployment)
        _wait(rolled_out, 300, f"deployment {name} to roll out")
    sts = apps.read_namespaced_stateful_set_status(f"{PREFIX}-redis", NAMESPACE)
    assert (sts.status.ready_replicas or 0) == 1


def _workers_with_ready_scaledobjects(snapshot: dict[str, Any]) -> bool:
    return (snapshot.get("available") is True and snapshot.get("keda") is True
            and sorted(w["job_type"] for w in snapshot["workers"]) == ["llm", "ocr"]
            and all((w["scaled_object"] or {}).get("ready") for w in snapshot["workers"]))


def test_each_worker_has_a_ready_scaledobject_and_its_hpa(api_client) -> None:
    from kubernetes.client import AutoscalingV2Api
    from offload_status.cluster_view import ClusterReader

    reader = ClusterReader(api_client, NAMESPACE, RELEASE, timeout_seconds=10)

    def ready() -> tuple[bool, dict[str, Any]]:
        snapshot = reader.read()
        return _workers_with_ready_scaledobjects(snapshot), snapshot
    snapshot = _wait(ready, 180, "both workers' ScaledObjects to be Ready")

    autoscaling = AutoscalingV2Api(api_client)
    for worker in snapshot["workers"]:
        so = worker["scaled_object"]
        assert so["name"] == worker["deployment"] == f"{PREFIX}-worker-{worker['job_type']}"
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(so["hpa"], NAMESPACE)
        assert hpa.spec.scale_target_ref.name == worker["deployment"]
        assert hpa.spec.max_replicas == so["max_replicas"]


def test_the_status_service_may_read_its_own_namespaces_workers_and_nothing_else(api_client) -> None:
    from kubernetes.client import AuthorizationV1Api, V1ResourceAttributes, V1SubjectAccessReview, V1SubjectAccessReviewSpec

    authz = AuthorizationV1Api(api_client)
    account = f"system:serviceaccount:{NAMESPACE}:{PREFIX}-status"

    def allowed(verb: str, group: str, resource: str, namespace: str) -> bool:
        review = V1SubjectAccessReview(spec=V1SubjectAccessReviewSpec(
            user=account, resource_attributes=V1ResourceAttributes(
                verb=verb, group=group, resource=resource, namespace=namespace)))
        return authz.create_subject_access_review(review).status.allowed

    for group, resource in (("apps", "deployments"), ("keda.sh", "scaledobjects")):
        assert allowed("list", group, resource, NAMESPACE), (group, resource)
        assert not allowed("update", group, resource, NAMESPACE), (group, resource)
        assert not allowed("list", group, resource, "kube-system"), (group, resource)
    assert not allowed("get", "", "secrets", NAMESPACE)


# Runs inside the status pod: its own /v1/queues, with a key from its own mounted key file.
_QUEUES_FROM_INSIDE = """
import json, os, urllib.request
from offload_core.settings import Settings
key = Settings().api_key_pairs[0][1]
request = urllib.request.Request(f"http://127.0.0.1:{os.environ['OFFLOAD_PORT']}/v1/queues",
                                 headers={"Authorization": f"Bearer {key}"})
print(json.dumps(json.load(urllib.request.urlopen(request, timeout=10))["cluster"]))
"""


def test_the_status_service_shows_the_workers_it_reads_in_the_cluster(api_client) -> None:
    from kubernetes.client import CoreV1Api
    from kubernetes.stream import stream

    core = CoreV1Api(api_client)
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=(
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=status")).items
    pod = next(p.metadata.name for p in pods if p.status.phase == "Running")

    def shown() -> tuple[bool, dict[str, Any]]:
        out = stream(core.connect_get_namespaced_pod_exec, pod, NAMESPACE, command=["python", "-c", _QUEUES_FROM_INSIDE],
                     stderr=False, stdin=False, stdout=True, tty=False)
        cluster = json.loads(out.strip().splitlines()[-1])
        return _workers_with_ready_scaledobjects(cluster), cluster
    cluster = _wait(shown, 120, "the status service to show both workers and their ready ScaledObjects")
    assert (cluster["namespace"], cluster["release"]) == (NAMESPACE, RELEASE)


def test_helm_test_submits_a_job_and_it_succeeds(api_client) -> None:
    helm = os.environ.get("OFFLOAD_HELM") or str(tool("helm"))
    result = subprocess.run([helm, "test", RELEASE, "-n", NAMESPACE, "--timeout", "10m", "--logs"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
