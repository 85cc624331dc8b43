"""Fixtures for the status service's cluster view: the TLS material of a test cluster, a
Kubernetes API server speaking the real protocol, the service-account files a pod would have,
and status processes started with the service's own command."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.status.kube_api import FakeKubeApi, Tls, make_tls
from tests.support.platform import PlatformFactory
from tests.support.processes import Service, free_port

NAMESPACE = "jobs"
RELEASE = "rel"


@pytest.fixture(scope="session")
def kube_tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("kube-tls"))


@pytest.fixture
def kube_api(kube_tls: Tls) -> Iterator[FakeKubeApi]:
    api = FakeKubeApi(namespace=NAMESPACE, token=secrets.token_urlsafe(32), tls=kube_tls).start()
    yield api
    api.stop()


@pytest.fixture
def service_account(tmp_path: Path, kube_api: FakeKubeApi, kube_tls: Tls) -> Path:
    """The files the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(kube_api.token)
    (directory / "ca.crt").write_bytes(kube_tls.ca_cert.read_bytes())
    (directory / "namespace").write_text(NAMESPACE)
    return directory


@pytest.fixture
def pod_env(kube_api: FakeKubeApi, service_account: Path) -> dict[str, str]:
    """What a pod of the chart's status Deployment sees, pointed at the test API server."""
    return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kube_api.port),
            "OFFLOAD_K8S_SERVICE_ACCOUNT_DIR": str(service_account), "OFFLOAD_K8S_RELEASE": RELEASE}


@pytest.fixture
def start_status(platform_factory: PlatformFactory, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start `offload-status` alone (its queue view needs no gateway or worker)."""
    started: list[Service] = []

    def start(env: dict[str, str]) -> Service:
        port = free_port()
        service = Service("offload-status", platform_factory.env(OFFLOAD_PORT=str(port), **env), tmp_path, port=port)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop(timeout=10)
