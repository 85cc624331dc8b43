"""One trace per job, across real processes, as a collector receives it; metrics and logs to match.

The platform runs as it does in production (gateway, status, worker-ocr, worker-llm started by
their commands) exporting over OTLP/HTTP to a real receiver. The LLM worker uses the OpenAI
backend against a real llama.cpp server, behind a recording proxy that shows what the worker
sent. A traced test client submits one LLM and one OCR job and follows them on the status
service, inside its own spans, as an instrumented caller would; a third job is submitted
without any trace context. The scenario runs once; each test reads one behaviour from it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.documents import text_png
from tests.support.platform import TERMINAL, Platform, PlatformFactory
from tests.support.processes import TEST_DB, RedisServer, free_port
from tests.telemetry.conftest import CLIENT_SERVICE, TracedClient, otel_env
from tests.telemetry.otlp_receiver import OtlpReceiver, ReceivedSpan, render_tree
from tests.telemetry.prom import Samples, scrape, value
from tests.telemetry.recording_proxy import RecordingProxy

GATEWAY, STATUS, WORKER_OCR, WORKER_LLM = "offload-gateway", "offload-status", "offload-worker-ocr", "offload-worker-llm"
LLM_API_KEY = "sk-offload-test-" + secrets.token_hex(12)
PROMPT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0,
          "model": "smollm2-135m-instruct"}


@dataclass
class Scenario:
    platform: Platform
    receiver: OtlpReceiver
    proxy: RecordingProxy
    worker_urls: dict[str, str]
    jobs: dict[str, dict] = field(default_factory=dict)       # "llm" | "ocr" | "bare" -> final record
    client_traces: dict[str, str] = field(default_factory=dict)  # "llm" | "ocr" -> client trace id
    before: dict[str, Samples] = field(default_factory=dict)
    after: dict[str, Samples] = field(default_factory=dict)

    def scrape_all(self) -> dict[str, Samples]:
        return {GATEWAY: scrape(self.platform.metrics_url("gateway")),
                STATUS: scrape(self.platform.metrics_url("status")),
                **{name: scrape(self.platform.metrics_url(name.removeprefix("offload-"))) for name in self.worker_urls}}

    def spans(self, job: str) -> list[ReceivedSpan]:
        return self.receiver.trace(self.jobs[job]["trace_id"])


def follow(platform: Platform, job_id: str, headers: dict[str, str], timeout: float = 120) -> dict:
    """Poll the status service (with the caller's trace headers) until the job has ended."""
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{platform.status.url}/v1/jobs/{job_id}", headers=platform.headers(**headers),
                        timeout=10).raise_for_status().json()
        if job["state"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['state']} after {timeout}s")
        time.sleep(0.1)


def one(spans: list[ReceivedSpan], **match: str) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one span with {match}, found {len(found)}:\n{render_tree(spans)}"
    return found[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def trace_is_complete(spans: list[ReceivedSpan], *names: str) -> bool:
    return set(names) <= {s.name for s in spans}


@pytest.fixture(scope="module")
def scenario(redis_server: RedisServer, llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    redis_server.flush(TEST_DB)  # the test database: no other platform runs while this module does
    receiver = OtlpReceiver().start()
    proxy = RecordingProxy(llama_server.removesuffix("/v1")).start()
    factory = PlatformFactory(redis_url=redis_server.db_url(TEST_DB), log_dir=tmp_path_factory.mktemp("traces"))
    ports = {WORKER_OCR: free_port(), WORKER_LLM: free_port()}
    traced = TracedClient(receiver.endpoint)
    try:
        platform = factory.start(env=otel_env(receiver), worker_env={
            "ocr": {"OFFLOAD_WORKER_HTTP_PORT": str(ports[WORKER_OCR])},
            "llm": {"OFFLOAD_WORKER_HTTP_PORT": str(ports[WORKER_LLM]), "OFFLOAD_LLM_BACKEND": "openai",
                    "OFFLOAD_LLM_BASE_URL": f"{proxy.url}/v1", "OFFLOAD_LLM_API_KEY": LLM_API_KEY},
        })
        s = Scenario(platform, receiver, proxy, {k: f"http://127.0.0.1:{p}" for k, p in ports.items()})
        s.before = s.scrape_all()

        with traced.span("client: submit and follow an LLM job") as trace_id:
            r = platform.submit_llm(PROMPT, **traced.traceparent())
            assert r.status_code == 202, r.text
            s.jobs["llm"] = follow(platform, r.json()["id"], traced.traceparent())
            s.client_traces["llm"] = trace_id
        with traced.span("client: submit and follow an OCR job") as trace_id:
            r = platform.submit_ocr(text_png("Trace this page"), "page.png", **traced.traceparent())
            assert r.status_code == 202, r.text
            s.jobs["ocr"] = follow(platform, r.json()["id"], traced.traceparent())
            s.client_traces["ocr"] = trace_id
        r = platform.submit_llm(PROMPT)
        assert r.status_code == 202, r.text
        s.jobs["bare"] = follow(platform, r.json()["id"], {})

        assert {job["state"] for job in s.jobs.values()} == {"succeeded"}, s.jobs
        receiver.wait_for(lambda: trace_is_complete(s.spans("llm"), "llm.generate", "POST", "GET /v1/jobs/{job_id}")
                          and trace_is_complete(s.spans("ocr"), "ocr.page", "GET /v1/jobs/{job_id}")
                          and trace_is_complete(s.spans("bare"), "llm.generate", "POST"),
                          30, "the jobs' traces to arrive")
        s.after = s.scrape_all()
        yield s
    finally:
        traced.close()
        factory.stop_all()
        proxy.stop()
        receiver.stop()


def assert_connected(spans: list[ReceivedSpan]) -> ReceivedSpan:
    """One root, and every other span's parent is in the trace. Returns the root."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_span_id is None]
    dangling = [s for s in spans if s.parent_span_id is not None and s.parent_span_id not in ids]
    assert len(roots) == 1 and not dangling, render_tree(spans)
    return roots[0]


def test_an_llm_job_is_one_trace_from_the_client_through_gateway_and_worker_to_the_llm_call(scenario: Scenario):
    job = scenario.jobs["llm"]
    spans = scenario.spans("llm")
    print(f"\nLLM job {job['id']} trace {job['trace_id']}:\n{render_tree(spans)}")
    assert job["trace_id"] == scenario.client_traces["llm"]
    root = assert_connected(spans)
    assert root.service == CLIENT_SERVICE
    server = one(spans, service=GATEWAY, kind="SERVER")
    publish = one(spans, name="apply_async/offload.llm.run", kind="PRODUCER")
    run = one(spans, name="run/offload.llm.run", kind="CONSUMER")
    generate = one(spans, name="llm.generate")
    http_call = one(spans, service=WORKER_LLM, kind="CLIENT", name="POST")
    assert (server.parent_span_id, server.name) == (root.span_id, "POST /v1/jobs/llm")
    assert (publish.parent_span_id, publish.service) == (server.span_id, GATEWAY)
    assert (run.parent_span_id, run.service) == (publish.span_id, WORKER_LLM)
    assert (generate.parent_span_id, generate.service) == (run.span_id, WORKER_LLM)
    assert http_call.parent_span_id == generate.span_id
    assert run.attributes["offload.job_id"] == publish.attributes["messaging.message.id"] == job["id"]
    assert generate.attributes["gen_ai.usage.output_tokens"] > 0
    # Redis calls sit under what made them: the submit script under the publish, the rest under the run.
    assert any(s.attributes.get("db.system") == "redis" for s in children(spans, publish))
    assert any(s.attributes.get("db.system") == "redis" for s in children(spans, run))
    assert {GATEWAY, WORKER_LLM, STATUS} <= {s.service for s in spans}


def test_the_llm_server_receives_the_traceparent_of_the_worker_http_span(scenario: Scenario):
    spans = scenario.spans("llm")
    http_call = one(spans, service=WORKER_LLM, kind="CLIENT", name="POST")
    sent = [headers for path, headers in scenario.proxy.seen if path == "/v1/chat/completions"]
    version, trace_id, parent_id, flags = sent[0]["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", http_call.trace_id, http_call.span_id)
    assert int(flags, 16) & 0x01, "the call must say it is sampled"


def test_an_ocr_job_is_one_trace_with_a_span_per_page_under_the_worker_run(scenario: Scenario):
    job = scenario.jobs["ocr"]
    spans = scenario.spans("ocr")
    print(f"\nOCR job {job['id']} trace {job['trace_id']}:\n{render_tree(spans)}")
    assert job["trace_id"] == scenario.client_traces["ocr"]
    root = assert_connected(spans)
    server = one(spans, service=GATEWAY, kind="SERVER")
    publish = one(spans, name="apply_async/offload.ocr.run")
    run = one(spans, name="run/offload.ocr.run")
    pages = [s for s in spans if s.name == "ocr.page"]
    assert server.parent_span_id == root.span_id and server.name == "POST /v1/jobs/ocr"
    assert publish.parent_span_id == server.span_id
    assert (run.parent_span_id, run.service) == (publish.span_id, WORKER_OCR)
    assert [(p.parent_span_id, p.service, p.attributes["ocr.page"]) for p in pages] == [(run.span_id, WORKER_OCR, 1)]
    assert {GATEWAY, WORKER_OCR, STATUS} <= {s.service for s in spans}


def test_status_reads_join_the_callers_trace(scenario: Scenario):
    spans = scenario.spans("llm")
    client = one(spans, service=CLIENT_SERVICE)
    reads = [s for s in spans if s.service == STATUS and s.kind == "SERVER"]
    assert reads and {s.name for s in reads} == {"GET /v1/jobs/{job_id}"}
    assert {s.parent_span_id for s in reads} == {client.span_id}
    assert all(any(c.attributes.get("db.system") == "redis" for c in children(spans, r)) for r in reads)


def test_a_job_submitted_without_trace_context_starts_its_trace_at_the_gateway(scenario: Scenario):
    job = scenario.jobs["bare"]
    spans = scenario.spans("bare")
    root = assert_connected(spans)
    assert (root.service, root.kind, root.name) == (GATEWAY, "SERVER", "POST /v1/jobs/llm")
    assert job["trace_id"] == root.trace_id
    assert one(spans, name="run/offload.llm.run").service == WORKER_LLM


def test_metrics_moved_by_what_the_jobs_did(scenario: Scenario):
    before, after = scenario.before, scenario.after

    def delta(service: str, name: str, **labels: str) -> float:
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    assert delta(GATEWAY, "offload_jobs_submitted_total", type="llm", priority="normal") == 2
    assert delta(GATEWAY, "offload_jobs_submitted_total", type="ocr", priority="normal") == 1
    assert delta(GATEWAY, "offload_http_requests_total", method="POST", route="/v1/jobs/llm", status="202") == 2
    assert delta(GATEWAY, "offload_http_request_duration_seconds_count", method="POST", route="/v1/jobs/ocr") == 1
    for worker, job_type, jobs in ((WORKER_LLM, "llm", 2), (WORKER_OCR, "ocr", 1)):
        assert delta(worker, "offload_jobs_finished_total", type=job_type, priority="normal", outcome="succeeded") == jobs
        assert delta(worker, "offload_job_run_seconds_count", type=job_type, outcome="succeeded") == jobs
        assert delta(worker, "offload_job_queue_wait_seconds_count", type=job_type, priority="normal") == jobs
        assert delta(worker, "offload_job_retries_total", type=job_type, priority="normal") == 0
        assert value(after[worker], "offload_job_run_seconds_sum", type=job_type, outcome="succeeded") > 0
    assert delta(STATUS, "offload_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="200") >= 3
    for queue in ("ocr.high", "ocr.normal", "ocr.low", "llm.high", "llm.normal", "llm.low"):
        assert value(after[STATUS], "offload_queue_depth", queue=queue) == 0
        assert (("offload_queue_depth", frozenset({("queue", queue)})) in after[STATUS])
    assert value(after[STATUS], "offload_dead_letters") == 0


def service_logs(scenario: Scenario) -> dict[str, list[dict]]:
    p = scenario.platform
    out = {}
    for name, svc in ((GATEWAY, p.gateway), (STATUS, p.status), (WORKER_OCR, p.workers["ocr"]),
                      (WORKER_LLM, p.workers["llm"])):
        out[name] = [json.loads(line) for line in Path(svc.log_path).read_text().splitlines() if line.strip()]
    return out


def test_every_service_logs_json_lines_naming_the_trace_span_and_job(scenario: Scenario):
    logs = service_logs(scenario)  # json.loads above fails on any line that is not JSON
    for job, worker in (("llm", WORKER_LLM), ("ocr", WORKER_OCR)):
        record = scenario.jobs[job]
        about_job = [line for line in logs[worker] if line.get("job_id") == record["id"]]
        assert about_job, f"no {worker} log line names job {record['id']}"
        assert {line.get("trace_id") for line in about_job} == {record["trace_id"]}
        assert all(len(line.get("span_id", "")) == 16 for line in about_job)
        accepted = [line for line in logs[GATEWAY]
                    if line.get("job_id") == record["id"] and line["logger"] == "offload.access"]
        assert [line["trace_id"] for line in accepted] == [record["trace_id"]]


def test_no_secret_reaches_spans_logs_or_metrics(scenario: Scenario):
    sent = [headers for path, headers in scenario.proxy.seen if path == "/v1/chat/completions"]
    assert sent and sent[0]["authorization"] == f"Bearer {LLM_API_KEY}"  # it was really in use
    tenant_keys = list(scenario.platform.keys.values())
    spans_text = json.dumps([[s.name, s.attributes] for s in scenario.receiver.spans], default=str)
    logs_text = json.dumps(service_logs(scenario))
    metrics_text = json.dumps([[k[0], sorted(k[1])] for samples in scenario.after.values() for k in samples])
    for secret in (LLM_API_KEY, *tenant_keys):
        assert secret not in spans_text
        assert secret not in logs_text
        assert secret not in metrics_text
