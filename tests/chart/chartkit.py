"""Helpers for the chart, image and skaffold tests: the real helm binary, rendered manifests,
the shared schemas (KEDA CRDs, skaffold), and the value sets every check runs over.

Tools that are not workspace packages come from `make chart-tools` (a cache outside the repo,
OFFLOAD_K8S_TOOLS); a missing tool is an error that names the target, not a skip.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "offload"
# The shared schemas (KEDA CRDs, skaffold) beside the repository; OFFLOAD_SHARED points elsewhere
# (a git worktree's parent has none).
SHARED = Path(os.environ.get("OFFLOAD_SHARED", REPO.parent / "shared"))
K8S_TOOLS = Path(os.environ.get("OFFLOAD_K8S_TOOLS", Path.home() / ".cache" / "offload" / "k8s-tools"))
RELEASE = "rel"
NAMESPACE = "offload"
KEDA_API = "keda.sh/v1alpha1"
SERVICES = ("gateway", "status", "worker-ocr", "worker-llm")


def tool(name: str) -> Path:
    path = K8S_TOOLS / "bin" / name
    if path.exists():
        return path
    pytest.fail(f"{name} is not installed in {path.parent}: run `make chart-tools` (mk/kubernetes.mk)")


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared schemas live beside the repository (../shared); "
                    "this check needs them and did not run")
    return path


@dataclass
class Rendered:
    """The objects `helm template` printed, with lookups by kind and name."""

    text: str
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        names = [d["metadata"]["name"] for d in self.of_kind(kind)]
        raise KeyError(f"no {kind} named {name}; there are {names}")

    def has(self, kind: str, name: str) -> bool:
        return any(d["metadata"]["name"] == name for d in self.of_kind(kind))

    def deployment(self, service: str) -> dict[str, Any]:
        return self.get("Deployment", f"{RELEASE}-offload-{service}")

    def container(self, service: str) -> dict[str, Any]:
        return self.deployment(service)["spec"]["template"]["spec"]["containers"][0]

    def env(self, service: str) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.container(service).get("env", [])}


class Helm:
    """The real helm v4 binary, run against charts/offload."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir
        self._files = 0

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=120)

    def values_file(self, values: dict[str, Any]) -> Path:
        self._files += 1
        path = self.workdir / f"values-{self._files}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def _template_args(self, values: dict[str, Any] | None, files: tuple[Path, ...], api_versions: tuple[str, ...],
                       kube_version: str | None) -> list[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for f in files:
            args += ["-f", str(f)]
        if values:
            args += ["-f", str(self.values_file(values))]
        for api in api_versions:
            args += ["--api-versions", api]
        if kube_version:
            args += ["--kube-version", kube_version]
        return args

    def template(self, values: dict[str, Any] | None = None, *files: Path, api_versions: tuple[str, ...] = (),
                 kube_version: str | None = None) -> Rendered:
        result = self.run(*self._template_args(values, files, api_versions, kube_version))
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        return Rendered(result.stdout, docs)

    def template_error(self, values: dict[str, Any] | None = None, *files: Path,
                       api_versions: tuple[str, ...] = ()) -> str:
        """Render values the chart must refuse; return helm's error output."""
        result = self.run(*self._template_args(values, files, api_versions, None))
        assert result.returncode != 0, f"helm accepted values it should refuse:\n{values}"
        return result.stderr




EXTERNAL_REDIS = {
    "redis": {"enabled": False},
    "externalRedis": {"host": "redis.example.internal", "port": 6380, "database": 2, "username": "offload",
                      "password": {"existingSecret": "ext-redis", "key": "password"},
                      "tls": {"enabled": True, "caSecret": "ext-redis-ca", "caKey": "ca.pem"}},
}
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
SCALE_TO_ZERO = {"components": {w: {"autoscaling": {"minReplicaCount": 0, "maxReplicaCount": 3, "listLength": 2,
                                                    "activationListLength": 1, "cooldownPeriod": 45}}
                                for w in ("workerOcr", "workerLlm")}}
EVERYTHING_ON = {
    "ingress": {"enabled": True, "className": "nginx", "gatewayHost": "api.example.com", "statusHost": "jobs.example.com",
                "tls": [{"secretName": "tls", "hosts": ["api.example.com", "jobs.example.com"]}]},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "otel": {"endpoint": "http://otel-collector.observability.svc:4317", "sampler": "parentbased_traceidratio",
             "samplerArg": "0.5", "resourceAttributes": {"deployment.environment": "test"}},
    "config": {"adminTenants": ["ops", "sre"], "webhooks": {"allowlist": ["10.1.0.0/16", "hooks.internal"]}},
    "default": {"extraEnv": [{"name": "OFFLOAD_ACCESS_LOG", "value": "0"}],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "ScheduleAnyway"}]},
    "components": {"workerLlm": {"llm": {"apiKey": {"existingSecret": "llm-key"}}},
                   "gateway": {"forwardedAllowIps": "*"}},
    "networkPolicy": {"apiFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]},
    "tests": {"jobType": "llm"},
}
S3_PAYLOADS = {
    "payloads": {"store": "s3", "s3ThresholdBytes": 1024,
                 "s3": {"endpointUrl": "https://minio.storage.svc:9000", "bucket": "offload-payloads",
                        "credentials": {"existingSecret": "offload-s3"}, "ca": {"configMap": "storage-ca"}}},
    "networkPolicy": {"s3To": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "storage"}}}]},
}

# name -> (values, api versions): every render-level check runs over all of these.
VALUE_SETS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "defaults": ({}, ()),
    "keda": ({}, (KEDA_API,)),
    "keda-disabled": ({"keda": {"enabled": False}}, (KEDA_API,)),
    "external-redis": (EXTERNAL_REDIS, (KEDA_API,)),
    "scale-to-zero": (SCALE_TO_ZERO, (KEDA_API,)),
    "everything-on": (EVERYTHING_ON, (KEDA_API, SERVICE_MONITOR_API)),
    "s3-payloads": (S3_PAYLOADS, (KEDA_API,)),
}
EXAMPLE_VALUES = sorted((REPO / "k8s" / "values").glob("*.yaml"))


