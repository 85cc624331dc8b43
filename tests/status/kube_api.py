"""A small Kubernetes API server for the cluster-view tests: HTTPS with its own CA, bearer-token
authentication, namespaced RBAC, label selectors, and the two list endpoints the status service
calls, answering with the JSON a real API server sends (Status objects for errors included).

No cluster runs on these machines; this is the real protocol peer the official client talks to,
reached the way a pod reaches its API server (KUBERNETES_SERVICE_HOST/PORT, the service-account
token and CA files).
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEPLOYMENTS = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments$")
SCALED_OBJECTS = re.compile(r"^/apis/keda\.sh/v1alpha1/namespaces/([^/]+)/scaledobjects$")


@dataclass(frozen=True)
class Tls:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls(directory: Path) -> Tls:
    """A cluster CA and an API server certificate for 127.0.0.1 it signed (the openssl CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert, "-days", "2", "-subj", "/CN=test-cluster-ca",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=kube-apiserver"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run([str(a) for a in argv], check=True, capture_output=True)
    return Tls(ca_cert, cert, key)


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details or {}, "code": code}


def _requirements(selector: str) -> list[str]:
    """Split a label selector on the commas outside `in (...)` sets."""
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [p for p in [*parts, current.strip()] if p]


def selector_matches(labels: dict[str, str], selector: str) -> bool:
    """The equality (`k=v`, `k!=v`) and set (`k in (a,b)`, `k notin (a,b)`) selectors."""
    for req in _requirements(selector):
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", req):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", req):
            key, op, value = m.groups()
            if (labels.get(key) == value) != (op != "!="):
                return False
        else:
            raise ValueError(f"selector the fake API does not parse: {req!r}")
    return True


@dataclass
class FakeKubeApi:
    """One namespace's objects. `token` is the service account's; `forbidden` names resources
    its Role does not cover (403); `scaled_objects=None` means KEDA's CRD is not installed (404);
    `delay_seconds` makes every answer late."""

    namespace: str
    token: str
    tls: Tls
    deployments: list[dict[str, Any]] = field(default_factory=list)
    scaled_objects: list[dict[str, Any]] | None = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)
    delay_seconds: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                code, body = api.answer(self.path, self.headers.get("Authorization", ""))
                payload = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (the timeout tests)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> FakeKubeApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, raw_path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append({"path": url.path, "query": query, "authorization": authorization})
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or credentials != self.token:  # the scheme is case-insensitive
            return 401, _status(401, "Unauthorized", "Unauthorized")
        user = "system:serviceaccount:%s:offload-status" % self.namespace
        for pattern, resource, group, kind in (
            (DEPLOYMENTS, "deployments", "apps", "DeploymentList"),
            (SCALED_OBJECTS, "scaledobjects", "keda.sh", "ScaledObjectList"),
        ):
            m = pattern.match(url.path)
            if not m:
                continue
            namespace = m.group(1)
            if namespace != self.namespace or resource in self.forbidden:
                return 403, _status(
                    403, "Forbidden",
                    f'{resource}.{group} is forbidden: User "{user}" cannot list resource "{resource}" '
                    f'in API group "{group}" in the namespace "{namespace}"',
                    {"group": group, "kind": resource})
            items = self.deployments if resource == "deployments" else self.scaled_objects
            if items is None:
                return 404, _status(404, "NotFound", "the server could not find the requested resource")
            selector = query.get("labelSelector", "")
            return 200, {"kind": kind, "apiVersion": "apps/v1" if group == "apps" else "keda.sh/v1alpha1",
                         "metadata": {"resourceVersion": "4242"},
                         "items": [o for o in items if selector_matches(o["metadata"].get("labels", {}), selector)]}
        return 404, _status(404, "NotFound", "the server could not find the requested resource")


# -- objects as the API server returns them ---------------------------------------------------

def labels(release: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "offload", "app.kubernetes.io/instance": release,
            "app.kubernetes.io/component": component, "app.kubernetes.io/part-of": "offload",
            "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "offload-0.1.0"}


def deployment(release: str, component: str, *, replicas: int, current: int, updated: int, ready: int,
               available: int, generation: int = 2, observed_generation: int = 2,
               namespace: str = "jobs") -> dict[str, Any]:
    name = f"{release}-offload-{component}"
    selector = {"app.kubernetes.io/name": "offload", "app.kubernetes.io/instance": release,
                "app.kubernetes.io/component": component}
    status: dict[str, Any] = {"observedGeneration": observed_generation, "replicas": current,
                              "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
                              "conditions": [
                                  {"type": "Available", "status": "True" if available else "False",
                                   "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.",
                                   "lastUpdateTime": "2026-11-21T10:00:00Z", "lastTransitionTime": "2026-11-21T10:00:00Z"},
                                  {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                                   "message": f'ReplicaSet "{name}-5d8f7c9b4" has successfully progressed.',
                                   "lastUpdateTime": "2026-11-21T10:00:00Z", "lastTransitionTime": "2026-11-21T09:00:00Z"}]}
    # The API server leaves zero counts out of the JSON.
    status = {k: v for k, v in status.items() if v != 0}
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "4100",
                     "generation": generation, "creationTimestamp": "2026-11-21T09:00:00Z",
                     "labels": labels(release, component),
                     "annotations": {"deployment.kubernetes.io/revision": "2", "meta.helm.sh/release-name": release}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": selector},
                              "spec": {"containers": [{"name": component, "image": f"offload-{component}:1.0.0"}],
                                       "serviceAccountName": name}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "revisionHistoryLimit": 5, "progressDeadlineSeconds": 600},
        "status": status,
    }


def scaled_object(release: str, component: str, *, ready: str, active: str, min_replicas: int = 0,
                  max_replicas: int = 10, namespace: str = "jobs") -> dict[str, Any]:
    name = f"{release}-offload-{component}"
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-so-{name}", "generation": 1,
                     "labels": labels(release, component), "finalizers": ["finalizer.keda.sh"]},
        "spec": {"scaleTargetRef": {"name": name}, "pollingInterval": 15, "cooldownPeriod": 300,
                 "minReplicaCount": min_replicas, "maxReplicaCount": max_replicas,
                 "triggers": [{"type": "redis", "name": f"{component}_high",
                               "metadata": {"listName": "ocr.high", "listLength": "5"}}]},
        "status": {
            "scaleTargetKind": "apps/v1.Deployment",
            "scaleTargetGVKR": {"group": "apps", "version": "v1", "kind": "Deployment", "resource": "deployments"},
            "originalReplicaCount": 1, "hpaName": f"keda-hpa-{name}", "triggersTypes": "redis",
            "authenticationsTypes": f"{release}-offload-redis", "externalMetricNames": ["s0-redis-ocr_high"],
            "lastActiveTime": "2026-11-21T10:05:00Z",
            "conditions": [
                {"type": "Ready", "status": ready, "reason": "ScaledObjectReady",
                 "message": "ScaledObject is defined correctly and is ready for scaling"},
                {"type": "Active", "status": active, "reason": "ScalerActive" if active == "True" else "ScalerNotActive",
                 "message": "Scaling is performed because triggers are active" if active == "True"
                 else "Scaling is not performed because triggers are not active"},
                {"type": "Fallback", "status": "False", "reason": "NoFallbackFound",
                 "message": "No fallbacks are active on this scaled object"},
                {"type": "Paused", "status": "False", "reason": "ScaledObjectUnpaused", "message": "pause annotation removed"},
            ],
        },
    }
