"""With no OTEL_* export settings the platform runs as usual: jobs still get real trace ids,
log lines still name them, and nothing complains about a missing collector."""

from __future__ import annotations

import json
import re

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
    # lines ("received", "succeeded in") are off in workers (offload_core.worker_main).
    runner = [line["msg"] for line in worker_lines if line["logger"] == "offload.runner" and job["id"] in line["msg"]]
    assert len(runner) == 1 and re.fullmatch(rf"job {job['id']} succeeded in \d+\.\d ms \(attempt 1\)", runner[0]), runner
    assert not [line for line in worker_lines if line["logger"].startswith("celery") and job["id"] in line["msg"]]
