"""KEDA for the cluster suite, run outside the cluster as TOOLING.md describes: the operator,
the metrics adapter and the admission webhooks built from github.com/kedacore/keda/v2
(`make cluster-tools`), with KEDA's own CRDs and manifests from the same module.

What a cluster install does with Services, this does with ExternalName Services that point at
localhost: the API server reaches the adapter (as the `v1beta1.external.metrics.k8s.io`
APIService, so the HPA controller reads KEDA's metrics) and the webhooks through them, and checks
their certificates for the in-cluster names (`keda-metrics-apiserver.keda.svc`, ...). One
certificate serves all three, as KEDA's own cert rotation does.

Upstream registers its webhook with failurePolicy Ignore; here it is Fail, so an unreachable
webhook fails the install instead of letting objects through unchecked.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from tests.cluster.control_plane import GO_TOOLS, ControlPlane, go_tool, say
from tests.support.processes import free_port

NAMESPACE = "keda"
SERVICES = ("keda-operator", "keda-metrics-apiserver", "keda-admission-webhooks")


def keda_config() -> Path:
    path = GO_TOOLS / "keda-config"
    if not (path / "bases").is_dir():
        pytest.fail(f"KEDA's manifests are not in {path}: run `make cluster-tools` (mk/cluster.mk copies them "
                    "from the KEDA module it builds)")
    return path


class Keda:
    def __init__(self, plane: ControlPlane, api: client.ApiClient) -> None:
        self.plane, self.api = plane, api
        self.core = client.CoreV1Api(api)
        self.processes = plane.processes  # stopped with the control plane; watched by its waits
        self.certs = plane.root / "keda-certs"
        self.ports = {"grpc": free_port(), "adapter": free_port(), "webhooks": free_port()}

    def install_crds(self) -> None:
        for path in sorted((keda_config() / "bases").glob("*.yaml")):
            utils.create_from_yaml(self.api, str(path))
        ext = client.ApiextensionsV1Api(self.api)
        names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in (keda_config() / "bases").glob("*.yaml")]

        def established() -> bool:
            for name in names:
                crd = ext.read_custom_resource_definition(name)
                if not any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
                    return False
            return True

        self.plane.wait("KEDA CRDs established", established, timeout=30)

    def _certificates(self) -> None:
        self.certs.mkdir()
        dns = [f"{s}.{NAMESPACE}.svc" for s in SERVICES] + [f"{s}.{NAMESPACE}.svc.cluster.local" for s in SERVICES]
        pair = self.plane.ca.issue("keda", "keda", dns=(*dns, "localhost"), ips=("127.0.0.1",))
        shutil.copy(pair.cert, self.certs / "tls.crt")
        shutil.copy(pair.key, self.certs / "tls.key")
        shutil.copy(self.plane.ca.cert, self.certs / "ca.crt")

    def _env(self) -> dict[str, str]:
        # The adapter refuses to start without WATCH_NAMESPACE; empty means every namespace.
        return {**os.environ, "KUBECONFIG": str(self.plane.admin_kubeconfig), "WATCH_NAMESPACE": "",
                "POD_NAMESPACE": NAMESPACE, "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE}

    def _start_processes(self) -> None:
        env, kubeconfig, certs = self._env(), str(self.plane.admin_kubeconfig), str(self.certs)
        self.processes.start("keda-operator", [
            str(go_tool("keda-operator")), "--leader-elect=false", "--enable-cert-rotation=false",
            "--cert-dir", certs, "--metrics-service-bind-address", f"127.0.0.1:{self.ports['grpc']}",
            "--metrics-bind-address", f"127.0.0.1:{free_port()}",
            "--health-probe-bind-address", f"127.0.0.1:{free_port()}", "--zap-log-level", "info",
            "--zap-encoder", "console"], env)
        self.processes.start("keda-adapter", [
            str(go_tool("keda-adapter")), "--secure-port", str(self.ports["adapter"]), "--bind-address", "127.0.0.1",
            "--cert-dir", certs, "--tls-cert-file", f"{certs}/tls.crt", "--tls-private-key-file", f"{certs}/tls.key",
            "--lister-kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig, "--port", str(free_port()),
            "--metrics-service-address", f"127.0.0.1:{self.ports['grpc']}", "--zap-encoder", "console"], env)
        self.processes.start("keda-webhooks", [
            str(go_tool("keda-webhooks")), "--cert-dir", certs, "--port", str(self.ports["webhooks"]),
            "--metrics-bind-address", f"127.0.0.1:{free_port()}",
            "--health-probe-bind-address", f"127.0.0.1:{free_port()}", "--zap-encoder", "console"], env)

    def _register(self) -> None:
        ca_bundle = base64.b64encode(self.plane.ca.cert.read_bytes()).decode()
        try:
            self.core.create_namespace({"metadata": {"name": NAMESPACE}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        for name in ("keda-metrics-apiserver", "keda-admission-webhooks"):
            self.core.create_namespaced_service(NAMESPACE, {
                "metadata": {"name": name},
                "spec": {"type": "ExternalName", "externalName": "localhost"}})
        api_service = yaml.safe_load((keda_config() / "metrics-server" / "api_service.yaml").read_text())
        api_service["spec"]["service"]["port"] = self.ports["adapter"]
        api_service["spec"]["caBundle"] = ca_bundle
        api_service["spec"].pop("insecureSkipTLSVerify", None)
        client.ApiregistrationV1Api(self.api).create_api_service(api_service)
        webhooks = yaml.safe_load((keda_config() / "webhooks" / "validation_webhooks.yaml").read_text())
        for hook in webhooks["webhooks"]:
            hook["clientConfig"]["service"]["port"] = self.ports["webhooks"]
            hook["clientConfig"]["caBundle"] = ca_bundle
            hook["failurePolicy"] = "Fail"
        client.AdmissionregistrationV1Api(self.api).create_validating_webhook_configuration(webhooks)

    def _api_service_available(self) -> bool:
        status = client.ApiregistrationV1Api(self.api).read_api_service("v1beta1.external.metrics.k8s.io").status
        return any(c.type == "Available" and c.status == "True" for c in (status.conditions or []))

    def start(self) -> Keda:
        begun = time.monotonic()
        self.install_crds()
        self._certificates()
        self._start_processes()
        self._register()
        self.plane.wait("KEDA metrics APIService Available", self._api_service_available, timeout=90)
        self.elapsed = time.monotonic() - begun
        say(f"KEDA (CRDs, operator, adapter as the external metrics APIService, webhooks) up in {self.elapsed:.1f} s")
        return self

    def logs(self) -> str:
        return "\n\n".join(f"--- {p.name}\n{p.tail(25)}" for p in self.processes.running if p.name.startswith("keda"))
