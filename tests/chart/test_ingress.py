"""The Ingress publishes the API and the dashboard, and nothing an operator keeps internal:
checked against the real route tables of the gateway and status apps, with the Ingress path
matching rules of the Kubernetes API (Exact, and Prefix by whole path elements)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from tests.chart.chartkit import RELEASE, Rendered

INTERNAL = ("/metrics", "/healthz", "/readyz")


def _matches(rule_path: str, path_type: str, path: str) -> bool:
    if path_type == "Exact":
        return path == rule_path
    prefix = [p for p in rule_path.split("/") if p]
    parts = [p for p in path.split("/") if p]
    return parts[:len(prefix)] == prefix


def _routed(ingress: dict[str, Any], host: str, path: str) -> str | None:
    """The backend Service the Ingress sends `host` + `path` to, or None."""
    for rule in ingress["spec"]["rules"]:
        if rule["host"] == host:
            for p in rule["http"]["paths"]:
                if _matches(p["path"], p["pathType"], path):
                    return p["backend"]["service"]["name"]
    return None


def _app_paths(app: FastAPI) -> list[str]:
    """Concrete paths of every route (path parameters filled in)."""
    out = []
    for route in app.routes:
        path = getattr(route, "path", "")
        out.append(path.replace("{job_id}", "0194f0c6-bd1b-7a38-9f0e-000000000000").replace("{path}", "app.js"))
    return out


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FastAPI]:
    from offload_core.settings import Settings
    from offload_gateway.app import create_app as gateway_app
    from offload_status.app import create_app as status_app

    settings = Settings(env="dev", redis_url="redis://127.0.0.1:1/0")  # never connected: routes only
    return {"gateway": gateway_app(settings), "status": status_app(settings)}


def test_the_ingress_routes_every_api_path_and_the_dashboard(renders: dict[str, Rendered],
                                                             apps: dict[str, FastAPI]) -> None:
    ingress = renders["everything-on"].get("Ingress", f"{RELEASE}-offload")
    for service, host in (("gateway", "api.example.com"), ("status", "jobs.example.com")):
        public = [p for p in _app_paths(apps[service]) if p.startswith("/v1/") or p == "/" or p.startswith("/dashboard")]
        assert public, service
        for path in public:
            assert _routed(ingress, host, path) == f"{RELEASE}-offload-{service}", f"{host}{path} is not routed"


def test_the_ingress_routes_no_metrics_or_probe_path(renders: dict[str, Rendered], apps: dict[str, FastAPI]) -> None:
    ingress = renders["everything-on"].get("Ingress", f"{RELEASE}-offload")
    for host in ("api.example.com", "jobs.example.com"):
        for path in INTERNAL:
            assert _routed(ingress, host, path) is None, f"{host}{path} is published"
    # Whatever else the apps serve outside the API (docs, probes) stays internal too.
    for service, host in (("gateway", "api.example.com"), ("status", "jobs.example.com")):
        for path in _app_paths(apps[service]):
            if path in INTERNAL:
                assert _routed(ingress, host, path) is None
    # The backends are the API ports; /metrics is on another port that no rule names.
    ports = {p["backend"]["service"]["port"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert ports == {"http"}
