"""APIs that explain themselves: docs that work with no network (in Chromium), a request sent to
the wrong service answered with the right one's URL, one max_tokens limit stated once, and CORS
that lets the dashboard call the gateway whatever host name it was reached by."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, expect

from offload_core.settings import Settings
from offload_core.web.service_map import GATEWAY, STATUS, served_by
from offload_gateway.app import create_app as gateway_app
from offload_status.app import create_app as status_app

from tests.e2e.test_job_lifecycle import assert_problem


def test_one_max_tokens_limit_is_stated_once(apis):
    refusals = [apis.submit_llm({"prompt": "Hi", "max_tokens": n}) for n in (10_000_000, 32_768, 4097)]
    details = {assert_problem(r, 422)["detail"] for r in refusals}
    assert details == {"max_tokens may be at most 4096 on this service (OFFLOAD_LLM_MAX_TOKENS_LIMIT)"}
    assert refusals[0].json()["errors"] == [{"field": "max_tokens", "message": details.pop()}]
    assert apis.submit_llm({"prompt": "Hi", "max_tokens": 4096}).status_code == 202


def test_a_request_for_the_other_service_names_that_services_url(apis):
    job_id = apis.submit_llm({"prompt": "Hi", "max_tokens": 2}).json()["id"]
    wrong = assert_problem(httpx.get(f"{apis.gateway.url}/v1/jobs/{job_id}", headers=apis.headers()), 405)
    assert (wrong["service"], wrong["service_url"]) == ("status", apis.status.url)
    assert wrong["detail"] == (f"GET /v1/jobs/{job_id} is served by the status service: "
                               f"send it to {apis.status.url}/v1/jobs/{job_id}")
    for path in ("/v1/queues", "/v1/workers", "/v1/dead-letters", f"/v1/jobs/{job_id}/events"):
        problem = assert_problem(httpx.get(f"{apis.gateway.url}{path}", headers=apis.headers()), 404)
        assert problem["service"] == "status" and apis.status.url + path in problem["detail"]
    submit = assert_problem(httpx.post(f"{apis.status.url}/v1/jobs/llm", headers=apis.headers(),
                                       json={"prompt": "Hi"}), 405)
    assert submit["service"] == "gateway" and submit["title"] == "Served by the gateway service"
    cancel = assert_problem(httpx.delete(f"{apis.status.url}/v1/jobs/{job_id}", headers=apis.headers()), 405)
    assert cancel["service"] == "gateway"
    # Neither serves it: the plain answer, pointing at the docs.
    assert "/docs" in assert_problem(httpx.get(f"{apis.gateway.url}/v1/nothing", headers=apis.headers()), 404)["detail"]


def _api_routes(app) -> list[tuple[str, str]]:
    sample = str(uuid.uuid4())
    out = []
    for route in app.routes:
        path = getattr(route, "path", "")
        if not path.startswith("/v1/"):
            continue
        for method in sorted(getattr(route, "methods", set()) - {"HEAD"}):
            out.append((method, re.sub(r"{(job|pipeline)_id}", sample, path)))
    return out


def test_the_service_map_names_every_route_of_both_apps_and_no_other():
    settings = Settings(env="dev")
    gateway, status = _api_routes(gateway_app(settings)), _api_routes(status_app(settings))
    assert len(gateway) >= 7 and len(status) >= 8
    assert {served_by(m, p) for m, p in gateway} == {GATEWAY}, gateway
    assert {served_by(m, p) for m, p in status} == {STATUS}, status


def test_cors_lets_any_origin_call_the_gateway_without_credentials(apis):
    job_id = apis.submit_llm({"prompt": "Hi", "max_tokens": 2}).json()["id"]
    for origin in ("http://127.0.0.1:8001", "http://my-laptop.lan:8001", "https://offload.example.com"):
        preflight = httpx.options(f"{apis.gateway.url}/v1/jobs/{job_id}", headers={
            "Origin": origin, "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in preflight.headers
    # The dashboard reads batches and downloads their files from the gateway: GET, with the key in a header.
    preflight = httpx.options(f"{apis.gateway.url}/v1/batches", headers={
        "Origin": "http://127.0.0.1:8001", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200 and "GET" in preflight.headers["access-control-allow-methods"]
    listed = httpx.get(f"{apis.gateway.url}/v1/batches", headers={**apis.headers(), "Origin": "http://127.0.0.1:8001"})
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == "*"
    # The key still decides: an origin that may call gets 401 without one.
    no_key = httpx.delete(f"{apis.gateway.url}/v1/jobs/{job_id}", headers={"Origin": "https://evil.example"})
    assert no_key.status_code == 401 and no_key.headers["access-control-allow-origin"] == "*"


@pytest.mark.slow
@pytest.mark.parametrize(("service", "page", "shows"), [
    ("gateway", "/docs", "/v1/jobs/llm"), ("status", "/docs", "/v1/workers")])
def test_api_docs_render_with_no_network(apis, browser: Browser, service: str, page: str, shows: str):
    base = getattr(apis, service).url
    context = browser.new_context()
    left: list[str] = []

    def only_the_service(route) -> None:  # no network beyond the service itself
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_service)
    tab = context.new_page()
    try:
        tab.goto(base + page)
        expect(tab.get_by_text(shows, exact=False).first).to_be_visible(timeout=30_000)
        assert left == [], f"the docs page asked for {left}"
    finally:
        context.close()
