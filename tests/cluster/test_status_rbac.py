"""The status service's in-cluster view, run with its own ServiceAccount's token against the real
RBAC the chart installs: the status code's own reader (offload_status.cluster_view) sees the
release's workers and ScaledObjects, and the token is refused everything else (Secrets, other
namespaces, verbs the view does not use)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.clusterkit import ClusterHelm, merged
from tests.cluster.control_plane import ControlPlane

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def viewed(keda, api: client.ApiClient, helm: ClusterHelm, restricted_namespace, external_redis_values) -> str:
    ns = restricted_namespace("viewed")
    helm.apply("install", "view", ns, merged(external_redis_values(api, ns),
                                             {"components": {"gateway": {"replicas": 1}, "status": {"replicas": 1}}}))
    return ns


def _token(api: client.ApiClient, namespace: str) -> str:
    request = client.CoreV1Api(api).create_namespaced_service_account_token(
        "view-offload-status", namespace, {"spec": {"expirationSeconds": 600}})
    return request.status.token


def _account_dir(tmp_path: Path, plane: ControlPlane, token: str, namespace: str) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(plane.ca.cert.read_bytes())
    (directory / "namespace").write_text(namespace)
    return directory


def test_the_status_view_reads_its_workers_with_its_own_token(viewed: str, api: client.ApiClient,
                                                              control_plane: ControlPlane, tmp_path: Path) -> None:
    from offload_core.settings import Settings
    from offload_status.cluster_view import ClusterReader

    account = _account_dir(tmp_path, control_plane, _token(api, viewed), viewed)
    settings = Settings(env="dev", k8s_service_account_dir=account, k8s_release="view")
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(control_plane.api_port)}
    snapshot = ClusterReader.from_service_account(settings, environ).read()
    assert snapshot["available"] is True, snapshot
    assert snapshot["keda"] is True and snapshot["namespace"] == viewed
    workers = {w["deployment"]: w for w in snapshot["workers"]}
    assert sorted(workers) == ["view-offload-worker-llm", "view-offload-worker-ocr"], snapshot
    assert all(w["scaled_object"] is not None for w in workers.values()), snapshot


@pytest.mark.parametrize(("verb", "group", "resource", "namespace", "allowed"), [
    ("list", "apps", "deployments", "viewed", True),
    ("list", "keda.sh", "scaledobjects", "viewed", True),
    # Not used by the view, so not granted (defect: the Role granted get and watch).
    ("get", "apps", "deployments", "viewed", False),
    ("watch", "apps", "deployments", "viewed", False),
    ("watch", "keda.sh", "scaledobjects", "viewed", False),
    ("list", "", "secrets", "viewed", False),
    ("get", "", "secrets", "viewed", False),
    ("list", "", "pods", "viewed", False),
    ("list", "apps", "deployments", "kube-system", False),
    ("list", "apps", "deployments", "", False),  # cluster-wide
])
def test_the_status_token_may_do_exactly_what_the_view_needs(viewed: str, api: client.ApiClient, verb: str,
                                                             group: str, resource: str, namespace: str,
                                                             allowed: bool) -> None:
    review = client.AuthorizationV1Api(api).create_subject_access_review({
        "spec": {"user": f"system:serviceaccount:{viewed}:view-offload-status",
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{viewed}", "system:authenticated"],
                 "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace}}})
    assert review.status.allowed is allowed, review.status.reason


def test_the_status_token_is_refused_secrets_and_other_namespaces_by_the_server(
        viewed: str, api: client.ApiClient, control_plane: ControlPlane) -> None:
    configuration = client.Configuration()
    configuration.host = control_plane.server
    configuration.ssl_ca_cert = str(control_plane.ca.cert)
    configuration.api_key = {"authorization": _token(api, viewed)}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    core = client.CoreV1Api(client.ApiClient(configuration))
    apps = client.AppsV1Api(client.ApiClient(configuration))
    assert [d.metadata.name for d in apps.list_namespaced_deployment(viewed).items]
    for call in (lambda: core.list_namespaced_secret(viewed),
                 lambda: apps.list_namespaced_deployment("kube-system"),
                 lambda: apps.read_namespaced_deployment("view-offload-gateway", viewed)):
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403
