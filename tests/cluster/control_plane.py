"""A real Kubernetes control plane on loopback, for the cluster suite: etcd (Debian's), and
kube-apiserver, kube-controller-manager and kube-scheduler built from k8s.io/kubernetes
(`make cluster-tools`). Authorization is Node,RBAC and admission includes PodSecurity, as on a
real cluster; no kubelet runs (sim_node.py stands in for one).

Every process is ours: started in its own process group with its log in the run directory,
stopped (TERM, then KILL) when the fixture ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.support.certs import Authority, Pair, service_account_keys
from tests.support.processes import free_port

GO_TOOLS = Path(os.environ.get("OFFLOAD_GO_TOOLS", Path.home() / ".cache" / "offload" / "go-tools"))
SERVICE_CIDR = "10.0.0.0/24"
NODE_NAME = "sim-node"


def go_tool(name: str) -> Path:
    path = GO_TOOLS / "bin" / name
    if not path.exists():
        pytest.fail(f"{name} is not built in {path.parent}: run `make cluster-tools` (mk/cluster.mk builds it from "
                    "its Go module; ~25 CPU-minutes cold, nothing once built)")
    return path


def say(message: str) -> None:
    """Progress lines the suite prints as it goes (pytest -s shows them live; -rA in the report)."""
    sys.stdout.write(f"[cluster] {message}\n")
    sys.stdout.flush()


def _die_with_parent() -> None:
    os.setsid()
    try:  # Linux: the child gets SIGKILL if pytest dies without cleaning up
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Processes:
    """The processes a fixture started, stopped together, last started first."""

    log_dir: Path
    running: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        log = self.log_dir / f"{name}.log"
        proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env or dict(os.environ),
                                preexec_fn=_die_with_parent)
        process = Process(name, proc, log)
        self.running.append(process)
        return process

    def stop(self) -> None:
        """One by one, clients first: etcd last, so the API server is not left retrying it."""
        for p in reversed(self.running):
            if p.alive():
                os.killpg(p.proc.pid, signal.SIGTERM)
                try:
                    p.proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.proc.pid, signal.SIGKILL)
                    p.proc.wait(5)
        self.running.clear()


def kubeconfig(path: Path, server: str, ca: Path, client: Pair, user: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
    }))
    return path


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = root / "pki"
        self.pki.mkdir(parents=True)
        self.processes = Processes(root)
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.timings: dict[str, float] = {}

    # -- certificates and kubeconfigs ------------------------------------------------------------

    def _certificates(self) -> None:
        self.ca = Authority(self.pki, "ca", "offload-test-ca")
        self.front_proxy_ca = Authority(self.pki, "front-proxy-ca", "offload-test-front-proxy-ca")
        self.serving = self.ca.issue("apiserver", "kube-apiserver", dns=(
            "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local"), ips=("127.0.0.1", "10.0.0.1"))
        self.front_proxy_client = self.front_proxy_ca.issue("front-proxy-client", "front-proxy-client")
        self.service_account = service_account_keys(self.pki)
        users = {
            "admin": ("admin", "system:masters"),
            "controller-manager": ("system:kube-controller-manager", ""),
            "scheduler": ("system:kube-scheduler", ""),
            "node": (f"system:node:{NODE_NAME}", "system:nodes"),
        }
        self.kubeconfigs: dict[str, Path] = {}
        for name, (cn, org) in users.items():
            pair = self.ca.issue(f"user-{name}", cn, organization=org)
            self.kubeconfigs[name] = kubeconfig(self.root / f"{name}.kubeconfig", self.server, self.ca.cert, pair, name)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfigs["admin"]

    # -- processes -------------------------------------------------------------------------------

    def _etcd(self) -> str:
        # etcd fsyncs every write: in memory (/dev/shm) the apiserver is not slowed by a shared disk.
        shm = Path("/dev/shm")
        data = Path(tempfile.mkdtemp(prefix="offload-etcd-", dir=shm if os.access(shm, os.W_OK) else self.root))
        self._etcd_data = data
        client, peer = free_port(), free_port()
        self.processes.start("etcd", [
            shutil.which("etcd") or "etcd", "--name", "offload-test", "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"offload-test=http://127.0.0.1:{peer}", "--log-level", "warn", "--logger", "zap",
            "--quota-backend-bytes", str(512 * 2**20),
        ])
        return f"http://127.0.0.1:{client}"

    def _apiserver(self, etcd: str) -> None:
        p = self.pki
        self.processes.start("kube-apiserver", [
            str(go_tool("kube-apiserver")),
            "--etcd-servers", etcd,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.api_port),
            "--tls-cert-file", str(self.serving.cert), "--tls-private-key-file", str(self.serving.key),
            "--client-ca-file", str(self.ca.cert),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(self.service_account.cert),
            "--service-account-signing-key-file", str(self.service_account.key),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", "NodeRestriction,PodSecurity",
            "--allow-privileged=false",
            # The aggregation layer, so KEDA's metrics adapter serves external.metrics.k8s.io.
            "--requestheader-client-ca-file", str(self.front_proxy_ca.cert),
            "--requestheader-allowed-names", "front-proxy-client",
            "--requestheader-username-headers", "X-Remote-User",
            "--requestheader-group-headers", "X-Remote-Group",
            "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
            "--proxy-client-cert-file", str(self.front_proxy_client.cert),
            "--proxy-client-key-file", str(self.front_proxy_client.key),
            "--profiling=false", "--v", "1",
        ])

    def _controller_manager(self) -> None:
        cm = str(self.kubeconfigs["controller-manager"])
        self.processes.start("kube-controller-manager", [
            str(go_tool("kube-controller-manager")),
            "--kubeconfig", cm, "--authentication-kubeconfig", cm, "--authorization-kubeconfig", cm,
            "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
            "--leader-elect=false", "--use-service-account-credentials",
            "--service-account-private-key-file", str(self.service_account.key),
            "--root-ca-file", str(self.ca.cert),
            "--cluster-signing-cert-file", str(self.ca.pair.cert), "--cluster-signing-key-file", str(self.ca.pair.key),
            # The HPA reads KEDA's metrics every 5 s instead of 15 s: the suite waits less, nothing
            # else changes.
            "--horizontal-pod-autoscaler-sync-period", "5s",
            "--profiling=false", "--v", "1",
        ])

    def _scheduler(self) -> None:
        sched = str(self.kubeconfigs["scheduler"])
        self.processes.start("kube-scheduler", [
            str(go_tool("kube-scheduler")),
            "--kubeconfig", sched, "--authentication-kubeconfig", sched, "--authorization-kubeconfig", sched,
            "--bind-address", "127.0.0.1", "--secure-port", str(free_port()), "--leader-elect=false",
            "--profiling=false", "--v", "1",
        ])

    # -- readiness ---------------------------------------------------------------------------------

    def _admin_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        admin = yaml.safe_load(self.admin_kubeconfig.read_text())["users"][0]["user"]
        context.load_cert_chain(admin["client-certificate"], admin["client-key"])
        return context

    def get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.server + path, context=self._admin_tls(), timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait(self, what: str, check, timeout: float) -> None:
        start = time.monotonic()
        last = ""
        while time.monotonic() - start < timeout:
            for p in self.processes.running:
                if not p.alive():
                    pytest.fail(f"{p.name} exited ({p.proc.returncode}) while waiting for {what}:\n{p.tail()}")
            try:
                ok = check()
                if ok:
                    self.timings[what] = time.monotonic() - start
                    return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.25)
        logs = "\n\n".join(f"--- {p.name}\n{p.tail(15)}" for p in self.processes.running)
        pytest.fail(f"{what} not reached within {timeout:.0f} s ({last})\n{logs}")

    def start(self) -> ControlPlane:
        begun = time.monotonic()
        self._certificates()
        say(f"certificates made in {time.monotonic() - begun:.1f} s")
        etcd = self._etcd()
        self._apiserver(etcd)
        self.wait("kube-apiserver /readyz", lambda: self.get("/readyz")[0] == 200, timeout=90)
        say(f"kube-apiserver {self.server} ready in {self.timings['kube-apiserver /readyz']:.1f} s")
        self._controller_manager()
        self._scheduler()
        # The controller manager has started when it made the root CA ConfigMap in a namespace.
        self.wait("kube-controller-manager", lambda: self.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")[0] == 200,
                  timeout=60)
        self.timings["control plane"] = time.monotonic() - begun
        say(f"control plane up in {self.timings['control plane']:.1f} s")
        return self

    def stop(self) -> None:
        self.processes.stop()
        shutil.rmtree(getattr(self, "_etcd_data", self.root / "none"), ignore_errors=True)

    def logs(self) -> str:
        return "\n\n".join(f"--- {p.name}\n{p.tail(20)}" for p in self.processes.running)
