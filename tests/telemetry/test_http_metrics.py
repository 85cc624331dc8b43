"""HTTP request metrics of the API services: one series per route template, never per path."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from offload_core.observability.exposition import render_latest
from offload_core.settings import Settings
from offload_core.web.observability import install_observability
from tests.telemetry.prom import Samples, parse, value


def make_app() -> FastAPI:
    app = FastAPI()
    install_observability(app, Settings(env="dev"))

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        if thing_id == "broken":
            raise RuntimeError("a bug")
        return {"id": thing_id}

    return app


def scrape(client: TestClient) -> Samples:
    """This process's metrics (the app runs in it; services serve them on their metrics port)."""
    return parse(render_latest()[1].decode())


def test_requests_are_counted_by_route_template_method_and_status():
    client = TestClient(make_app(), raise_server_exceptions=False)
    before = scrape(client)
    for path in ("/v1/things/a", "/v1/things/b", "/v1/things/broken", "/no/such/path/123", "/no/such/path/456"):
        client.get(path)
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/things/{thing_id}"
    assert delta("offload_http_requests_total", method="GET", route=route, status="200") == 2
    assert delta("offload_http_requests_total", method="GET", route=route, status="500") == 1
    assert delta("offload_http_requests_total", method="GET", route="unmatched", status="404") == 2
    assert delta("offload_http_request_duration_seconds_count", method="GET", route=route) == 3
    assert not any("/no/such/path" in str(labels) for _, labels in after)
