"""With no OTEL_* export settings the platform runs as usual: jobs still get real trace ids,
log lines still name them, and nothing complains about a missing collector."""

from __future__ import annotations

import json
import re

import redis

from tests.support.platform import PlatformFactory

NO_EXPORT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""}


def test_jobs_get_trace_ids_and_nothing_complains_without_an_exporter(platform_factory: PlatformFactory):
    platform = platform_factory.start(workers=("llm",), env=NO_EXPORT)
    r = platform.submit_llm({"prompt": "Hi", "max_tokens": 2})
    assert r.status_code == 202, r.text
    job = platform.wait(r.json()["id"])
    assert job["state"] == "succeeded"
    assert re.fullmatch(r"[0-9a-f]{32}", job["trace_id"]) and int(job["trace_id"], 16) != 0
    for service in (platform.gateway, platform.status, platform.workers["llm"]):
        lines = [json.loads(line) for line in service.log_text().splitlines() if line.strip()]
        complaints = [line for line in lines if line["level"] in ("error", "critical")
                      or line["logger"].startswith("opentelemetry")]
        assert not complaints, complaints
    worker_lines = [json.loads(line) for line in platform.workers["llm"].log_text().splitlines() if line.strip()]
    assert {line.get("trace_id") for line in worker_lines if line.get("job_id") == job["id"]} == {job["trace_id"]}
    # One line per delivery, the runner's, with the outcome and run time; Celery's own per-task
    # lines ("received", "succeeded in") are off in workers (offload_core.worker.main).
    runner = [line["msg"] for line in worker_lines if line["logger"] == "offload.runner" and job["id"] in line["msg"]]
    assert len(runner) == 1 and re.fullmatch(rf"job {job['id']} succeeded in \d+\.\d ms \(attempt 1\)", runner[0]), runner
    assert not [line for line in worker_lines if line["logger"].startswith("celery") and job["id"] in line["msg"]]


def test_an_unrecorded_submit_makes_no_publish_span_and_its_message_carries_the_requests_context(
        platform_factory: PlatformFactory):
    # No worker, so the job's message stays on its queue to be read.
    platform = platform_factory.start(workers=(), env=NO_EXPORT)
    client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = platform.submit_llm({"prompt": "Hi", "max_tokens": 2}, traceparent=f"00-{client_trace}-00f067aa0ba902b7-01")
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    access = [line for line in (json.loads(x) for x in platform.gateway.log_text().splitlines() if x.strip())
              if line["logger"] == "offload.access" and line.get("job_id") == job_id]
    assert len(access) == 1 and access[0]["trace_id"] == client_trace, access
    message = json.loads(redis.Redis.from_url(platform_factory.redis_url).lindex("llm.normal", 0))
    # The request's own (server) span, flagged not sampled: nothing downstream records either.
    assert message["headers"]["traceparent"] == f"00-{client_trace}-{access[0]['span_id']}-00"
