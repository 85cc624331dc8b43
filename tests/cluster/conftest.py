"""Fixtures of the cluster suite: one control plane per session (control_plane.py) with a
simulated node (sim_node.py), KEDA out of cluster (keda_out_of_cluster.py), the real helm and
kubectl against it, namespaces that enforce Pod Security `restricted`, and a Redis on loopback
for KEDA to read.

Every test here is marked `cluster` (`make test-cluster`; `make test` runs them last). Tests that
need a cluster without KEDA's CRDs run first: KEDA, once installed, stays for the session.
The times the suite measures are printed at the end of the run.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.chart.chartkit import tool
from tests.cluster.clusterkit import TIMINGS, ClusterHelm, record
from tests.cluster.control_plane import NODE_NAME, ControlPlane, Process
from tests.cluster.keda_out_of_cluster import Keda
from tests.support.processes import RedisServer

_KEDA_STARTED = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    mine = [i for i in items if Path(str(i.fspath)).is_relative_to(here)]
    for item in mine:
        item.add_marker(pytest.mark.cluster)
    # Without-KEDA tests first, in file order otherwise.
    first = [i for i in mine if "cluster_without_keda" in getattr(i, "fixturenames", ())]
    if first:
        rest = [i for i in items if i not in first]
        position = rest.index(next(i for i in rest if i in mine)) if any(i in mine for i in rest) else len(rest)
        items[:] = rest[:position] + first + rest[position:]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("cluster suite: measured times")
        for what, value in TIMINGS.items():
            terminalreporter.write_line(f"{what:<70} {value}")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("cluster")).start()
    node_started = time.monotonic()
    node: Process = plane.processes.start(
        "sim-node", [sys.executable, "-m", "tests.cluster.sim_node", "--kubeconfig", str(plane.kubeconfigs["node"]),
                     "--name", NODE_NAME], {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(plane.admin_kubeconfig)))

    def node_ready() -> bool:
        try:
            n = core.read_node(NODE_NAME)
        except ApiException:
            return False
        ready = any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        return ready and not any(t.key == "node.kubernetes.io/not-ready" for t in n.spec.taints or [])

    plane.wait("simulated node Ready and untainted", node_ready, timeout=60)
    record("control plane up (etcd, apiserver, controller-manager, scheduler)", plane.timings["control plane"])
    record("simulated node registered, Ready and untainted", time.monotonic() - node_started)
    assert node.alive()
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.admin_kubeconfig))


@pytest.fixture(scope="session")
def storage(api: client.ApiClient) -> str:
    """A default StorageClass with static volumes, as a cluster with local disks has: the chart's
    Redis claim binds to one (the PV controller binds it; nothing provisions)."""
    name = "sim-local"
    client.StorageV1Api(api).create_storage_class({
        "metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"})
    core = client.CoreV1Api(api)
    for i in range(6):
        core.create_persistent_volume({
            "metadata": {"name": f"sim-pv-{i}"},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": name, "persistentVolumeReclaimPolicy": "Delete",
                     "hostPath": {"path": f"/tmp/offload-sim-pv-{i}"}}})
    return name


@pytest.fixture
def cluster_without_keda(control_plane: ControlPlane) -> ControlPlane:
    """The control plane before KEDA's CRDs exist (these tests are collected first)."""
    if _KEDA_STARTED:
        pytest.fail("KEDA was installed before this test ran: tests needing a cluster without KEDA's CRDs must run first "
                    "(conftest orders them so; do not select them after KEDA tests with -k)")
    return control_plane


@pytest.fixture(scope="session")
def keda(control_plane: ControlPlane, api: client.ApiClient) -> Iterator[Keda]:
    global _KEDA_STARTED
    _KEDA_STARTED = True
    running = Keda(control_plane, api).start()
    record("KEDA up (CRDs, operator, metrics APIService Available, webhooks)", running.elapsed)
    yield running


@pytest.fixture(scope="session")
def keda_redis() -> Iterator[RedisServer]:
    """The Redis the chart's external-Redis values point at: KEDA reads its lists from loopback."""
    server = RedisServer(appendonly=False, password=secrets.token_hex(16)).start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> ClusterHelm:
    return ClusterHelm(tool("helm"), control_plane.admin_kubeconfig, tmp_path_factory.mktemp("helm-values"))


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = tool("kubectl")

    def run(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(binary), "--kubeconfig", str(control_plane.admin_kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def restricted_namespace(api: client.ApiClient) -> Callable[[str], str]:
    """Makes a namespace that enforces Pod Security `restricted` (and warns and audits at it)."""
    core = client.CoreV1Api(api)

    def make(name: str) -> str:
        labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
        core.create_namespace({"metadata": {"name": name, "labels": labels}})
        return name

    return make


@pytest.fixture(scope="session")
def external_redis_values(keda_redis: RedisServer) -> Callable[[client.ApiClient, str], dict[str, Any]]:
    """Values pointing the chart at the loopback Redis, after putting its password in a Secret
    of the namespace: the services and KEDA's TriggerAuthentication both read it there."""

    def make(api: client.ApiClient, namespace: str) -> dict[str, Any]:
        client.CoreV1Api(api).create_namespaced_secret(namespace, {
            "metadata": {"name": "redis-auth"}, "stringData": {"redis-password": keda_redis.password}})
        return {"redis": {"enabled": False},
                "externalRedis": {"host": "127.0.0.1", "port": keda_redis.port,
                                  "password": {"existingSecret": "redis-auth", "key": "redis-password"}}}

    return make
