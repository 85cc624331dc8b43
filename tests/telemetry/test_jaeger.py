"""Traces through the real tools an operator runs: all four services export to a real
OpenTelemetry Collector running the configuration of k8s/addons/observability.yaml, which sends
to a real Jaeger v2. Then, as docs/observability.md ("Opening a job's trace") says:

- Jaeger's API returns a job's trace by the `trace_id` of its record, one connected tree from
  the caller through the gateway, the worker and the status reads;
- the dashboard's trace link, with the template of k8s/values/kind.yaml pointed at this Jaeger,
  opens that trace's page on Jaeger;
- the gateway's and the worker's log lines about the job carry the same trace id.

The Jaeger built from its Go module has no UI bundle (the jaeger-ui assets are not part of the
module): its query service answers the UI's routes with a placeholder page, and the trace page's
data comes from /api/traces/{id} on the same origin, which the test reads as the UI would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect

from tests.support.browser import sign_in
from tests.support.documents import text_png
from tests.support.platform import TERMINAL, Platform, PlatformFactory
from tests.support.processes import REPO, TEST_DB, RedisServer, wait_for
from tests.telemetry.backends import Collector, Jaeger, JaegerSpan, collector_configs
from tests.telemetry.conftest import CLIENT_SERVICE, TracedClient
from tests.telemetry.otlp_receiver import render_tree

pytestmark = pytest.mark.slow

CONFIG = "k8s/addons/observability.yaml:otel-collector"
GATEWAY, STATUS = "offload-gateway", "offload-status"
WORKERS = {"ocr": "offload-worker-ocr", "llm": "offload-worker-llm"}
KIND_VALUES = REPO / "k8s" / "values" / "kind.yaml"


@dataclass
class Scenario:
    platform: Platform
    jaeger: Jaeger
    collector: Collector
    link_template: str
    jobs: dict[str, dict] = field(default_factory=dict)       # "ocr" | "llm" -> final record
    traces: dict[str, list[JaegerSpan]] = field(default_factory=dict)


def follow(platform: Platform, job_id: str, headers: dict[str, str]) -> dict:
    seen: dict = {}

    def done() -> bool:
        seen.update(httpx.get(f"{platform.status.url}/v1/jobs/{job_id}", headers=platform.headers(**headers),
                              timeout=10).raise_for_status().json())
        return seen["state"] in TERMINAL

    wait_for(done, 120, f"job {job_id} to end", interval=0.2)
    return seen


def complete(job_type: str):
    def check(spans: list[JaegerSpan]) -> bool:
        names = {(s.service, s.name) for s in spans}
        return {(CLIENT_SERVICE, f"client: {job_type}"), (GATEWAY, f"POST /v1/jobs/{job_type}"),
                (WORKERS[job_type], f"run/offload.{job_type}.run"), (STATUS, "GET /v1/jobs/{job_id}")} <= names
    return check


@pytest.fixture(scope="module")
def scenario(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    redis_server.flush(TEST_DB)
    workdir = tmp_path_factory.mktemp("jaeger")
    jaeger = Jaeger(workdir).start()
    collector = Collector(collector_configs()[CONFIG], jaeger, workdir).start()
    # The kind install's link template, pointed at this Jaeger instead of the port-forward.
    template = yaml.safe_load(KIND_VALUES.read_text())["config"]["tracingUiUrlTemplate"]
    template = template.replace("http://localhost:16686", jaeger.url)
    factory = PlatformFactory(redis_url=redis_server.db_url(TEST_DB), log_dir=workdir)
    traced = TracedClient(collector.otlp_http)
    try:
        platform = factory.start(env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
                                      "OTEL_BSP_SCHEDULE_DELAY": "100",
                                      "OFFLOAD_TRACING_UI_URL_TEMPLATE": template,
                                      "OFFLOAD_WORKER_CONCURRENCY": "2"})
        s = Scenario(platform, jaeger, collector, template)
        for job_type in ("ocr", "llm"):
            with traced.span(f"client: {job_type}"):
                if job_type == "ocr":
                    r = platform.submit_ocr(text_png("Jaeger shows this page"), "page.png", content_type="image/png",
                                            **traced.traceparent())
                else:
                    r = platform.submit_llm({"prompt": "Name a colour.", "max_tokens": 4, "temperature": 0},
                                            **traced.traceparent())
                assert r.status_code == 202, r.text
                s.jobs[job_type] = follow(platform, r.json()["id"], traced.traceparent())
        assert {j["state"] for j in s.jobs.values()} == {"succeeded"}, s.jobs
        for job_type, job in s.jobs.items():
            s.traces[job_type] = jaeger.wait_for_trace(job["trace_id"], complete(job_type))
        yield s
    finally:
        traced.close()
        factory.stop_all()
        collector.stop()
        jaeger.stop()


def one(spans: list[JaegerSpan], **match: str) -> JaegerSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one span with {match}, found {len(found)}:\n{render_tree(spans)}"
    return found[0]


@pytest.mark.parametrize("job_type", ["ocr", "llm"])
def test_jaeger_returns_the_jobs_connected_trace_by_its_trace_id(scenario: Scenario, job_type: str):
    job, spans = scenario.jobs[job_type], scenario.traces[job_type]
    print(f"\n{job_type} job {job['id']}, trace {job['trace_id']} from Jaeger:\n{render_tree(spans)}")
    assert {s.trace_id for s in spans} == {job["trace_id"]}
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_span_id is None]
    assert [r.service for r in roots] == [CLIENT_SERVICE], render_tree(spans)
    assert all(s.parent_span_id in ids for s in spans if s.parent_span_id), render_tree(spans)
    assert {s.service for s in spans} == {CLIENT_SERVICE, GATEWAY, WORKERS[job_type], STATUS}

    client = roots[0]
    server = one(spans, service=GATEWAY, kind="SERVER")
    publish = one(spans, name=f"apply_async/offload.{job_type}.run", kind="PRODUCER")
    run = one(spans, name=f"run/offload.{job_type}.run", kind="CONSUMER")
    assert (server.parent_span_id, server.name) == (client.span_id, f"POST /v1/jobs/{job_type}")
    assert (publish.parent_span_id, publish.service) == (server.span_id, GATEWAY)
    assert (run.parent_span_id, run.service) == (publish.span_id, WORKERS[job_type])
    assert run.attributes["offload.job_id"] == job["id"]
    assert (run.attributes["offload.outcome"], run.attributes["offload.attempt"], run.status) == ("succeeded", 1, "UNSET")
    work = "ocr.page" if job_type == "ocr" else "llm.generate"
    assert one(spans, name=work).parent_span_id == run.span_id
    reads = [s for s in spans if s.service == STATUS and s.kind == "SERVER"]
    assert reads and all(r.parent_span_id == client.span_id and r.name == "GET /v1/jobs/{job_id}" for r in reads)


def test_jaeger_knows_all_four_services(scenario: Scenario):
    services = httpx.get(f"{scenario.jaeger.url}/api/services", timeout=10).raise_for_status().json()["data"]
    assert {GATEWAY, STATUS, *WORKERS.values()} <= set(services)


def test_the_collector_runs_the_shipped_configuration_without_complaint(scenario: Scenario):
    log = scenario.collector.log()
    assert "Everything is ready" in log
    assert "deprecated" not in log.lower() and "\terror\t" not in log, log[-3000:]


def test_the_dashboards_trace_link_opens_the_trace_on_jaeger(scenario: Scenario, page: Page):
    platform, job = scenario.platform, scenario.jobs["llm"]
    sign_in(page, platform, "alice", f"/#/jobs/{job['id']}")
    link = page.locator("#job-trace-link")
    expect(link).to_have_text(job["trace_id"])
    href = link.get_attribute("href")
    assert href == scenario.link_template.replace("{trace_id}", job["trace_id"])
    with page.context.expect_page() as opened:
        link.click()
    trace_page = opened.value
    trace_page.wait_for_load_state()
    assert trace_page.url == href
    # Jaeger's query service answers its UI route (the page shows its injected UI config)...
    assert "JAEGER_VERSION" in trace_page.content()
    # ...and the trace page's data, from the same origin, is the job's trace.
    origin = href.split("/trace/")[0]
    data = httpx.get(f"{origin}/api/traces/{job['trace_id']}", timeout=10).raise_for_status().json()["data"]
    [trace] = data
    assert trace["traceID"] == job["trace_id"]
    services = {p["serviceName"] for p in trace["processes"].values()}
    assert {GATEWAY, WORKERS["llm"], STATUS} <= services
    assert {s["operationName"] for s in trace["spans"]} >= {"POST /v1/jobs/llm", "run/offload.llm.run"}


@pytest.mark.parametrize("job_type", ["ocr", "llm"])
def test_the_gateway_and_worker_log_lines_carry_the_same_trace_id(scenario: Scenario, job_type: str):
    job = scenario.jobs[job_type]
    platform = scenario.platform
    for service in (platform.gateway, platform.workers[job_type]):
        lines = [json.loads(line) for line in Path(service.log_path).read_text().splitlines()
                 if line.startswith("{")]
        about = [line for line in lines if line.get("job_id") == job["id"]]
        assert about, f"no log line of {service.command} names job {job['id']}"
        assert {line.get("trace_id") for line in about} == {job["trace_id"]}, about
    # The worker's outcome line is among them, in the run span's trace.
    run_lines = [json.loads(line) for line in Path(platform.workers[job_type].log_path).read_text().splitlines()
                 if line.startswith("{") and f"job {job['id']} succeeded" in line]
    assert len(run_lines) == 1 and run_lines[0]["trace_id"] == job["trace_id"]
    run = one(scenario.traces[job_type], name=f"run/offload.{job_type}.run")
    assert run_lines[0]["span_id"] == run.span_id
