"""The real observability backends, run by the tests on loopback: Prometheus and promtool
(Debian's package), an OpenTelemetry Collector and Jaeger v2 (built from their Go modules by
`make obs-tools`, mk/observability.mk).

A Go-built tool that is missing skips its test when the machine has no Go (nothing could build
it), and fails it otherwise: `make test` builds them, so missing means broken wiring.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.support.processes import REPO, free_port, wait_for

GO_TOOLS = Path(os.environ.get("OFFLOAD_GO_TOOLS", Path.home() / ".cache" / "offload" / "go-tools"))
JAEGER_CONFIG = REPO / "tests" / "telemetry" / "tools" / "jaeger" / "config.yaml"
K8S = REPO / "k8s"


def go_tool(name: str) -> Path:
    path = GO_TOOLS / "bin" / name
    if path.exists():
        return path
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        pytest.skip(f"Go is not installed, so {name} could not be built from its Go module; this test did not run")
    pytest.fail(f"{name} is not built in {path.parent}: run `make obs-tools` (mk/observability.mk)")


def debian_tool(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make obs-tools` (Debian's prometheus package)")
    return Path(found)


def collector_configs() -> dict[str, str]:
    """Every OpenTelemetry Collector configuration shipped in k8s/: "file:ConfigMap" -> config text."""
    out = {}
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ConfigMap" and "receivers:" in doc.get("data", {}).get("config.yaml", ""):
                out[f"{path.relative_to(REPO)}:{doc['metadata']['name']}"] = doc["data"]["config.yaml"]
    return out


class Process:
    """A backend process with its log in a file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.args, self.workdir = name, args, workdir
        self.env = {**os.environ, **(env or {})}
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Process":
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.workdir, start_new_session=True)
        return self

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# -- Prometheus ------------------------------------------------------------------------------


class Prometheus(Process):
    """A real Prometheus scraping the given targets ({job: metrics URL}) every `interval`."""

    def __init__(self, targets: dict[str, str], workdir: Path, interval: str = "1s") -> None:
        self.port = free_port()
        self.targets = targets
        config = {"global": {"scrape_interval": interval, "scrape_timeout": interval},
                  "scrape_configs": [self._scrape_config(job, url) for job, url in targets.items()]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        super().__init__("prometheus", [
            str(debian_tool("prometheus")), f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn"], workdir)

    @staticmethod
    def _scrape_config(job: str, url: str) -> dict[str, Any]:
        parts = urlsplit(url)
        return {"job_name": job, "metrics_path": parts.path, "static_configs": [{"targets": [parts.netloc]}]}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Prometheus":
        super().start()

        def ready() -> bool:
            self.alive()
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "prometheus ready", interval=0.2)
        return self

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query: [{"metric": {labels}, "value": float}]."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        body = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30).raise_for_status().json()
        assert body["status"] == "success", body
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in body["data"]["result"]]

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict[str, Any]]:
        """A range query: [{"metric": {labels}, "values": [float, ...]}]."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        body = httpx.get(f"{self.url}/api/v1/query_range", params=params, timeout=30).raise_for_status().json()
        assert body["status"] == "success", body
        return [{"metric": r["metric"], "values": [float(v) for _, v in r["values"]]} for r in body["data"]["result"]]

    def wait_for_scrape_after(self, moment: float, jobs: tuple[str, ...] | None = None, timeout: float = 30) -> float:
        """Wait until each target (or those of `jobs`) was scraped, successfully, after `moment`;
        returns when."""
        jobs = tuple(jobs or self.targets)

        def fresh() -> bool:
            ups = {u["metric"]["job"]: u["value"] for u in self.query("timestamp(up) and up == 1")}
            return all(ups.get(job, 0) > moment for job in jobs)

        wait_for(fresh, timeout, f"a scrape of {', '.join(jobs)} after {moment}", interval=0.2)
        return time.time()


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(debian_tool("promtool")), *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


# -- Jaeger ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JaegerSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    status: str  # UNSET, OK, ERROR
    attributes: dict[str, Any] = field(hash=False)
    start_ns: int = 0
    end_ns: int = 0


# Jaeger's API v3 writes OTLP JSON with enum numbers: span kinds and status codes.
SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _otlp_json_value(value: dict[str, Any]) -> Any:
    (kind, inner), = value.items()
    if kind == "arrayValue":
        return [_otlp_json_value(v) for v in inner.get("values", [])]
    if kind == "intValue":
        return int(inner)
    return inner


class Jaeger(Process):
    """Jaeger v2 (memory storage) on free loopback ports, with tests/telemetry/tools/jaeger/config.yaml."""

    def __init__(self, workdir: Path) -> None:
        self.ports = {name: free_port() for name in ("JAEGER_QUERY_HTTP_PORT", "JAEGER_QUERY_GRPC_PORT",
                                                     "JAEGER_OTLP_GRPC_PORT", "JAEGER_OTLP_HTTP_PORT")}
        super().__init__("jaeger", [str(go_tool("jaeger")), "--config", str(JAEGER_CONFIG)], workdir,
                         env={k: str(v) for k, v in self.ports.items()})

    @property
    def url(self) -> str:
        """The query service: the UI's routes and its APIs."""
        return f"http://127.0.0.1:{self.ports['JAEGER_QUERY_HTTP_PORT']}"

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.ports['JAEGER_OTLP_GRPC_PORT']}"

    def start(self) -> "Jaeger":
        super().start()

        def ready() -> bool:
            self.alive()
            try:
                return httpx.get(f"{self.url}/api/services", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "jaeger ready", interval=0.2)
        return self

    def trace(self, trace_id: str) -> list[JaegerSpan]:
        """The trace as Jaeger's API v3 returns it (OTLP JSON); [] while Jaeger has none."""
        r = httpx.get(f"{self.url}/api/v3/traces/{trace_id}", timeout=10)
        if r.status_code == 404:
            return []
        r.raise_for_status()
        spans = []
        for resource_spans in r.json()["result"]["resourceSpans"]:
            resource = {a["key"]: _otlp_json_value(a["value"]) for a in resource_spans["resource"]["attributes"]}
            for scope in resource_spans["scopeSpans"]:
                for s in scope["spans"]:
                    spans.append(JaegerSpan(
                        trace_id=s["traceId"], span_id=s["spanId"], parent_span_id=s.get("parentSpanId") or None,
                        name=s["name"], kind=SPAN_KINDS[s.get("kind", 0)], service=resource["service.name"],
                        status=STATUS_CODES[s.get("status", {}).get("code", 0)],
                        attributes={a["key"]: _otlp_json_value(a["value"]) for a in s.get("attributes", [])},
                        start_ns=int(s["startTimeUnixNano"]), end_ns=int(s["endTimeUnixNano"])))
        return spans

    def wait_for_trace(self, trace_id: str, complete, timeout: float = 60) -> list[JaegerSpan]:
        """Poll until `complete(spans)` holds for the trace; returns its spans."""
        seen: list[JaegerSpan] = []

        def done() -> bool:
            self.alive()
            seen[:] = self.trace(trace_id)
            return bool(seen) and complete(seen)

        try:
            wait_for(done, timeout, f"trace {trace_id} in jaeger", interval=0.5)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; spans so far: {sorted((s.service, s.name) for s in seen)}") from None
        return seen


# -- the Collector ---------------------------------------------------------------------------


class Collector(Process):
    """The Collector (otelcol-offload) running one of the configurations shipped in k8s/, as it
    is, except for what cannot be the same on loopback: the ports it listens on, where it sends
    (the test's Jaeger) and its own metrics port (off). `env` sets the configuration's ${env:...}."""

    def __init__(self, config_text: str, jaeger: Jaeger, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        config = Path(tempfile.mkstemp(prefix="otelcol-", suffix=".yaml", dir=workdir)[1])
        config.write_text(config_text)
        # The OTLP/gRPC exporter: `otlp` (the type's name until v0.140, then `otlp_grpc`).
        exporter = next(name for name in yaml.safe_load(config_text)["exporters"]
                        if name.split("/")[0] in ("otlp", "otlp_grpc"))
        sets = {"receivers::otlp::protocols::grpc::endpoint": f"127.0.0.1:{self.grpc_port}",
                "receivers::otlp::protocols::http::endpoint": f"127.0.0.1:{self.http_port}",
                f"exporters::{exporter}::endpoint": jaeger.otlp_grpc,
                "service::telemetry::metrics::level": "none"}
        args = [str(go_tool("otelcol-offload")), "--config", str(config)]
        args += [f"--set={key}={value}" for key, value in sets.items()]
        super().__init__(f"otelcol-{config.stem}", args, workdir, env=env)

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> "Collector":
        super().start()
        wait_for(lambda: self.alive() and "Everything is ready" in self.log(), 30, "the collector ready", interval=0.2)
        return self
