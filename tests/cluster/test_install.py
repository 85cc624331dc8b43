"""The chart installed with `helm install --wait` on a real API server, into namespaces that
enforce Pod Security `restricted`: without KEDA's CRDs (plain replicas), with them (KEDA's
admission webhook checks the ScaledObjects and the TriggerAuthentication, on install and on
upgrade), then upgraded and rolled back; and ServiceMonitors asked for on a cluster without the
Prometheus operator."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.clusterkit import ClusterHelm, merged, pods_of, wait_until

pytestmark = pytest.mark.timeout(300)

RELEASE_SELECTOR = "app.kubernetes.io/instance={release}"
# Small, so the simulated node fits every release of the session; the rest are the defaults.
SMALL = {"components": {"gateway": {"replicas": 1}, "status": {"replicas": 1}}}


def _all_running(api: client.ApiClient, namespace: str, release: str) -> list[client.V1Pod]:
    selector = RELEASE_SELECTOR.format(release=release)
    # Pods a rollout replaced are gone, not left terminating (the node finishes deletions).
    wait_until("no pod left terminating", lambda: not any(p.metadata.deletion_timestamp
                                                          for p in pods_of(api, namespace, selector)), timeout=30)
    pods = pods_of(api, namespace, selector)
    for pod in pods:
        ready = {c.type: c.status for c in pod.status.conditions or []}.get("Ready")
        assert pod.status.phase == "Running" and ready == "True", f"{pod.metadata.name}: {pod.status.phase}, Ready={ready}"
    return pods


def test_without_keda_crds_the_chart_installs_plain_replicas_and_every_pod_is_admitted(
        cluster_without_keda, api: client.ApiClient, helm: ClusterHelm, restricted_namespace, storage: str) -> None:
    ns = restricted_namespace("plain")
    notes = helm.apply("install", "plain", ns, SMALL)
    assert "does not serve keda.sh/v1alpha1" in notes
    apps = client.AppsV1Api(api)
    for worker in ("worker-ocr", "worker-llm"):
        assert apps.read_namespaced_deployment(f"plain-offload-{worker}", ns).spec.replicas == 1
    pods = _all_running(api, ns, "plain")
    components = sorted(p.metadata.labels["app.kubernetes.io/component"] for p in pods)
    assert components == ["gateway", "redis", "status", "worker-llm", "worker-ocr"]
    # The bundled Redis got its volume from the default StorageClass.
    (claim,) = client.CoreV1Api(api).list_namespaced_persistent_volume_claim(ns).items
    assert claim.status.phase == "Bound" and claim.spec.storage_class_name == storage
    # Pod Security is really enforced here: a pod that is not `restricted` is refused.
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(api).create_namespaced_pod(ns, {
            "metadata": {"name": "plain-root"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in json.loads(refused.value.body)["message"]


def test_with_keda_the_webhook_admits_the_scaled_objects_and_the_trigger_authentication(
        keda, api: client.ApiClient, helm: ClusterHelm, restricted_namespace, external_redis_values) -> None:
    ns = restricted_namespace("scaled")
    values = merged(SMALL, external_redis_values(api, ns))
    notes = helm.apply("install", "scaled", ns, values)
    assert "KEDA scales worker-ocr" in notes
    custom = client.CustomObjectsApi(api)
    for worker in ("worker-ocr", "worker-llm"):
        so = custom.get_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", f"scaled-offload-{worker}")
        # KEDA read the triggers (with the password from the TriggerAuthentication) and made an HPA.
        wait_until(f"ScaledObject {worker} Ready", lambda w=worker: _condition(
            custom.get_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", f"scaled-offload-{w}"),
            "Ready") == "True", timeout=60)
        assert so["spec"]["minReplicaCount"] == 0
    hpas = client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(ns).items
    assert sorted(h.spec.scale_target_ref.name for h in hpas) == ["scaled-offload-worker-llm", "scaled-offload-worker-ocr"]
    _all_running(api, ns, "scaled")

    # The webhook is live (failurePolicy Fail here): it refuses a second ScaledObject on a worker.
    second = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "second"},
              # minReplicaCount 1: a cpu-only trigger at 0 is refused for that alone, before or after the
              # duplicate check depending on KEDA's order; the duplicate is what is tested here.
              "spec": {"scaleTargetRef": {"name": "scaled-offload-worker-ocr"}, "minReplicaCount": 1,
                       "triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}]}}
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", second)
    message = json.loads(refused.value.body)["message"]
    # KEDA names the ScaledObject or its HPA, whichever of its checks runs first.
    assert "admission webhook" in message and "'scaled-offload-worker-ocr'" in message, message
    assert "is already managed by the" in message, message

    # An upgrade changes both kinds; the webhook admits the updates.
    helm.apply("upgrade", "scaled", ns, merged(values, {"components": {"workerOcr": {"autoscaling": {"listLength": 3}}}}))
    so = custom.get_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", "scaled-offload-worker-ocr")
    assert so["spec"]["advanced"]["scalingModifiers"]["target"] == "3"
    assert {t["metadata"]["listLength"] for t in so["spec"]["triggers"] if t["type"] == "redis"} == {"3"}


def test_an_upgrade_with_new_values_and_a_rollback_both_succeed_and_generated_secrets_stay(
        keda, api: client.ApiClient, helm: ClusterHelm, restricted_namespace, storage: str) -> None:
    ns = restricted_namespace("rollback")
    # The bundled Redis, with its generated password. KEDA, running outside the cluster, could not
    # resolve its Service name, so this release leaves the workers to plain replicas.
    values = merged(SMALL, {"keda": {"enabled": False}})
    helm.apply("install", "rb", ns, values)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    generated = {name: core.read_namespaced_secret(name, ns).data
                 for name in ("rb-offload-api-keys", "rb-offload-webhook-secrets", "rb-offload-redis")}

    helm.apply("upgrade", "rb", ns, merged(values, {"components": {"gateway": {"replicas": 2}},
                                                     "config": {"logLevel": "DEBUG"}}))
    assert apps.read_namespaced_deployment("rb-offload-gateway", ns).spec.replicas == 2
    assert core.read_namespaced_config_map("rb-offload-config", ns).data["OFFLOAD_LOG_LEVEL"] == "DEBUG"
    # `lookup` kept every generated secret: Redis and the services still agree on the password.
    for name, data in generated.items():
        assert core.read_namespaced_secret(name, ns).data == data, f"{name} changed on upgrade"

    result = helm.run("rollback", "rb", "1", "-n", ns, "--wait", "--timeout", "150s", timeout=210)
    assert result.returncode == 0, result.stderr
    assert apps.read_namespaced_deployment("rb-offload-gateway", ns).spec.replicas == 1
    assert core.read_namespaced_config_map("rb-offload-config", ns).data["OFFLOAD_LOG_LEVEL"] == "INFO"
    history = helm.run("history", "rb", "-n", ns, "-o", "json")
    assert [h["status"] for h in json.loads(history.stdout)] == ["superseded", "superseded", "deployed"]
    _all_running(api, ns, "rb")
    for name, data in generated.items():
        assert core.read_namespaced_secret(name, ns).data == data, f"{name} changed on rollback"
    assert base64.b64decode(generated["rb-offload-redis"]["redis-password"])


def test_service_monitors_without_the_prometheus_operator_install_cleanly(
        keda, api: client.ApiClient, helm: ClusterHelm, restricted_namespace, external_redis_values) -> None:
    ns = restricted_namespace("monitored")
    values = merged(SMALL, external_redis_values(api, ns), {"metrics": {"serviceMonitor": {"enabled": True}}})
    notes = helm.apply("install", "mon", ns, values)
    assert "does not serve monitoring.coreos.com/v1" in notes
    manifest = helm.run("get", "manifest", "mon", "-n", ns).stdout
    assert "kind: ServiceMonitor" not in manifest
    _all_running(api, ns, "mon")


def _condition(obj: dict, kind: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status")
    return None
