"""The in-cluster view: the official client, configured the way a pod configures it (API server
from KUBERNETES_SERVICE_HOST/PORT, the service-account token and CA), reads a Kubernetes API
server that speaks the real protocol over TLS; GET /v1/queues of a real status process shows
what it read, or says plainly why it could not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest
from offload_core.settings import Settings
from offload_status.cluster_view import ClusterReader, ClusterView, NotInCluster, cluster_view_for

from tests.status.conftest import NAMESPACE, RELEASE
from tests.status.kube_api import FakeKubeApi, deployment, scaled_object
from tests.support.platform import PlatformFactory
from tests.support.processes import Service, free_port


def _populate(api: FakeKubeApi) -> None:
    """This release's two workers, and what the selector must leave out: the release's gateway,
    and the workers of another release in the same namespace."""
    api.deployments = [
        deployment(RELEASE, "worker-ocr", replicas=3, current=3, updated=3, ready=2, available=2),
        deployment(RELEASE, "worker-llm", replicas=0, current=0, updated=0, ready=0, available=0),
        deployment(RELEASE, "gateway", replicas=2, current=2, updated=2, ready=2, available=2),
        deployment("other", "worker-ocr", replicas=5, current=5, updated=5, ready=5, available=5),
    ]
    api.scaled_objects = [
        scaled_object(RELEASE, "worker-ocr", ready="True", active="True", min_replicas=1, max_replicas=8),
        scaled_object(RELEASE, "worker-llm", ready="True", active="False", min_replicas=0, max_replicas=4),
        scaled_object("other", "worker-ocr", ready="False", active="False"),
    ]


def _run(async_fn: Callable[[], Awaitable[object]]) -> object:
    """anyio.run on a thread of its own: Playwright's sync API (the dashboard tests of the same
    session) keeps an event loop running on the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, async_fn).result()


def _settings(**fields: object) -> Settings:
    return Settings(env="dev", **fields)


def _queues(status: Service, factory: PlatformFactory) -> dict:
    r = httpx.get(f"{status.url}/v1/queues", headers={"Authorization": f"Bearer {factory.keys['alice']}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_queues_shows_this_releases_worker_replicas_and_scaledobjects(
        kube_api: FakeKubeApi, pod_env: dict[str, str], start_status: Callable[..., Service],
        platform_factory: PlatformFactory) -> None:
    _populate(kube_api)
    # As the chart runs it: the namespace from the downward API, the release from the template.
    status = start_status({**pod_env, "OFFLOAD_K8S_NAMESPACE": NAMESPACE})
    cluster = _queues(status, platform_factory)["cluster"]

    assert cluster["available"] is True and "reason" not in cluster
    assert (cluster["namespace"], cluster["release"], cluster["keda"]) == (NAMESPACE, RELEASE, True)
    assert [(w["job_type"], w["deployment"]) for w in cluster["workers"]] == [
        ("llm", "rel-offload-worker-llm"), ("ocr", "rel-offload-worker-ocr")]
    llm, ocr = cluster["workers"]
    assert ocr["replicas"] == {"desired": 3, "current": 3, "updated": 3, "ready": 2, "available": 2}
    assert (ocr["rolled_out"], ocr["rollout"]) == (False, "2 of 3 updated replicas available")
    assert {k: ocr["scaled_object"][k] for k in ("name", "ready", "active", "min_replicas", "max_replicas", "hpa")} == {
        "name": "rel-offload-worker-ocr", "ready": True, "active": True, "min_replicas": 1, "max_replicas": 8,
        "hpa": "keda-hpa-rel-offload-worker-ocr"}
    assert llm["replicas"]["desired"] == 0 and llm["rolled_out"] is True
    assert (llm["scaled_object"]["ready"], llm["scaled_object"]["active"]) == (True, False)
    assert [c["type"] for c in llm["scaled_object"]["conditions"]] == ["Ready", "Active", "Fallback", "Paused"]

    # It authenticated with the mounted token and asked the API server to do the selecting.
    assert {r["authorization"].lower() for r in kube_api.requests} == {f"bearer {kube_api.token}".lower()}
    assert {r["path"] for r in kube_api.requests} == {
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", f"/apis/keda.sh/v1alpha1/namespaces/{NAMESPACE}/scaledobjects"}
    assert all(r["query"]["labelSelector"].startswith(f"app.kubernetes.io/instance={RELEASE},")
               for r in kube_api.requests)


def test_a_role_without_scaledobjects_says_so_and_still_shows_the_replicas(
        kube_api: FakeKubeApi, pod_env: dict[str, str], start_status: Callable[..., Service],
        platform_factory: PlatformFactory) -> None:
    _populate(kube_api)
    kube_api.forbidden = {"scaledobjects"}
    status = start_status(pod_env)  # the namespace from the service account's file this time
    cluster = _queues(status, platform_factory)["cluster"]

    assert cluster["available"] is False
    assert cluster["reason"].startswith(f"cannot list scaledobjects.keda.sh in namespace {NAMESPACE}: 403 Forbidden")
    assert 'cannot list resource "scaledobjects"' in cluster["reason"]  # the API server's own words
    assert "components.status.rbac.create" in cluster["reason"]
    assert [w["replicas"]["desired"] for w in cluster["workers"]] == [0, 3]
    assert all(w["scaled_object"] is None for w in cluster["workers"])


def test_outside_a_cluster_queues_says_so_and_works(start_status: Callable[..., Service],
                                                    platform_factory: PlatformFactory) -> None:
    # An empty host is how a process outside any pod looks, whatever machine runs the tests.
    stats = _queues(start_status({"KUBERNETES_SERVICE_HOST": ""}), platform_factory)
    assert stats["cluster"] == {"available": False, "reason": "not running in a Kubernetes cluster"}
    assert set(stats["workers"]) == {"ocr", "llm"}


# -- the reader and the view in this process, configured through the same path ----------------

def _reader(pod_env: dict[str, str], **settings: object) -> ClusterReader:
    return ClusterReader.from_service_account(
        _settings(k8s_service_account_dir=Path(pod_env["OFFLOAD_K8S_SERVICE_ACCOUNT_DIR"]),
                  k8s_release=RELEASE, **settings), pod_env, timeout_seconds=0.5)


def test_without_keda_installed_the_workers_show_a_plain_replica_count(
        kube_api: FakeKubeApi, pod_env: dict[str, str]) -> None:
    _populate(kube_api)
    kube_api.scaled_objects = None  # the API server does not serve keda.sh/v1alpha1
    snapshot = _reader(pod_env).read()
    assert snapshot["available"] is True and snapshot["keda"] is False
    assert [w["scaled_object"] for w in snapshot["workers"]] == [None, None]
    assert [w["replicas"]["desired"] for w in snapshot["workers"]] == [0, 3]


def test_a_namespace_outside_the_role_is_refused_with_the_reason(
        kube_api: FakeKubeApi, pod_env: dict[str, str]) -> None:
    _populate(kube_api)
    snapshot = _reader(pod_env, k8s_namespace="kube-system").read()
    assert snapshot["available"] is False and snapshot["workers"] == []
    assert snapshot["reason"].startswith("cannot list deployments in namespace kube-system: 403 Forbidden")


def test_an_api_server_that_does_not_answer_becomes_a_reason(pod_env: dict[str, str]) -> None:
    closed = {**pod_env, "KUBERNETES_SERVICE_PORT": str(free_port())}
    snapshot = _reader(closed).read()
    assert snapshot["available"] is False
    assert snapshot["reason"].startswith(f"the Kubernetes API at https://127.0.0.1:{closed['KUBERNETES_SERVICE_PORT']} "
                                         "did not answer when listing deployments")


def test_a_slow_api_server_times_out_into_a_reason(kube_api: FakeKubeApi, pod_env: dict[str, str]) -> None:
    kube_api.delay_seconds = 5
    snapshot = _reader(pod_env).read()
    assert snapshot["available"] is False and "did not answer" in snapshot["reason"]
    assert "timed out" in snapshot["reason"].lower()


def test_an_api_server_with_a_certificate_from_another_ca_is_not_trusted(
        kube_api: FakeKubeApi, pod_env: dict[str, str], tmp_path: Path) -> None:
    from tests.status.kube_api import make_tls

    other_ca = make_tls(tmp_path / "other").ca_cert
    account = Path(pod_env["OFFLOAD_K8S_SERVICE_ACCOUNT_DIR"])
    (account / "ca.crt").write_bytes(other_ca.read_bytes())
    snapshot = _reader(pod_env).read()
    assert snapshot["available"] is False and "CERTIFICATE_VERIFY_FAILED" in snapshot["reason"]
    assert kube_api.requests == []


def test_in_a_cluster_without_a_token_the_reason_names_the_chart_value(pod_env: dict[str, str]) -> None:
    (Path(pod_env["OFFLOAD_K8S_SERVICE_ACCOUNT_DIR"]) / "token").unlink()
    with pytest.raises(NotInCluster, match="components.status.rbac.create"):
        _reader(pod_env)
    view = cluster_view_for(_settings(k8s_service_account_dir=Path(pod_env["OFFLOAD_K8S_SERVICE_ACCOUNT_DIR"])),
                            pod_env)
    snapshot = _run(view.snapshot)
    assert snapshot["available"] is False and "no service-account token is mounted" in snapshot["reason"]


def test_the_view_reads_once_per_cache_period(kube_api: FakeKubeApi, pod_env: dict[str, str]) -> None:
    _populate(kube_api)
    now = [100.0]
    view = ClusterView(_reader(pod_env).read, cache_seconds=5, clock=lambda: now[0])

    async def three_snapshots() -> list[dict]:
        first = await view.snapshot()
        now[0] += 4.9
        second = await view.snapshot()
        kube_api.deployments = kube_api.deployments[1:]  # the OCR worker is gone
        now[0] += 0.2
        return [first, second, await view.snapshot()]

    first, second, third = _run(three_snapshots)
    assert second is first and len(kube_api.requests) == 4  # two lists per read, two reads
    assert [w["job_type"] for w in third["workers"]] == ["llm"]


def test_a_failing_reader_never_breaks_the_view() -> None:
    def broken() -> dict:
        raise RuntimeError("surprise from the client")

    snapshot = _run(ClusterView(broken).snapshot)
    assert snapshot == {"available": False, "reason": "reading the cluster failed: RuntimeError: surprise from the client"}
