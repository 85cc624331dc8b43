"""Tail sampling that keeps the interesting jobs: the Collector configuration of
k8s/addons/otel-collector-tail-sampling.yaml, run by a real Collector at 1% (its
OFFLOAD_TRACE_SAMPLE_PERCENT), in front of a real Jaeger. Every failed, dead, retried or slow
job's trace is still in Jaeger, whole (gateway and worker); of the ordinary jobs about 1 in 100.

The LLM worker talks to the real llama.cpp server through a proxy that refuses, fails or slows
the prompts that ask for it; OCR jobs fail for real (a language that is not installed).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.documents import damaged_pixels_png
from tests.support.platform import Platform, PlatformFactory
from tests.support.processes import TEST_DB, RedisServer
from tests.telemetry.backends import Collector, Jaeger, JaegerSpan, collector_configs
from tests.telemetry.otlp_receiver import render_tree
from tests.telemetry.recording_proxy import PromptFaults, RecordingProxy

pytestmark = pytest.mark.slow

CONFIG = "k8s/addons/otel-collector-tail-sampling.yaml:otel-collector"
DECISION_WAIT = 30  # seconds, as the configuration says
SLOW_SECONDS = 11   # over its 10 s latency policy
ORDINARY = 100
WAVE = 10           # ordinary jobs per wave: short queues, so an ordinary trace stays well under 10 s


@dataclass
class Scenario:
    platform: Platform
    jaeger: Jaeger
    collector: Collector
    jobs: dict[str, list[dict]] = field(default_factory=dict)  # kind -> final records


def llm(platform: Platform, marker: str = "") -> str:
    r = platform.submit_llm({"prompt": f"{marker}Say hi.", "max_tokens": 2, "temperature": 0})
    assert r.status_code == 202, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def scenario(redis_server: RedisServer, llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    redis_server.flush(TEST_DB)
    workdir = tmp_path_factory.mktemp("tail-sampling")
    jaeger = Jaeger(workdir).start()
    collector = Collector(collector_configs()[CONFIG], jaeger, workdir,
                          env={"OFFLOAD_TRACE_SAMPLE_PERCENT": "1"}).start()
    proxy = RecordingProxy(llama_server.removesuffix("/v1"), faults=PromptFaults()).start()
    factory = PlatformFactory(redis_url=redis_server.db_url(TEST_DB), log_dir=workdir)
    try:
        platform = factory.start(env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OFFLOAD_WORKER_CONCURRENCY": "2", "OFFLOAD_LLM_MAX_ATTEMPTS": "2",
        }, worker_env={"llm": {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": f"{proxy.url}/v1",
                               "OFFLOAD_LLM_MAX_HTTP_ATTEMPTS": "1"}})
        s = Scenario(platform, jaeger, collector)
        ids: dict[str, list[str]] = {
            "failed-llm": [llm(platform, "[refuse] ") for _ in range(4)],
            # Damaged pixels: accepted at submit, failed by the OCR worker.
            "failed-ocr": [platform.submit_ocr(damaged_pixels_png(), "page.png", content_type="image/png").json()["id"]
                           for _ in range(4)],
            "dead": [llm(platform, "[unavailable] ") for _ in range(2)],
            "retried": [llm(platform, f"[unavailable-once:{uuid.uuid4().hex}] ") for _ in range(3)],
            "slow": [llm(platform, f"[slow:{SLOW_SECONDS}] ")],
            "ordinary": [],
        }
        for _ in range(ORDINARY // WAVE):
            wave = [llm(platform) for _ in range(WAVE)]
            for job_id in wave:
                platform.wait(job_id)
            ids["ordinary"] += wave
        s.jobs = {kind: [platform.wait(job_id) for job_id in job_ids] for kind, job_ids in ids.items()}
        # Every trace is decided DECISION_WAIT after its first span; the last began a moment ago.
        time.sleep(DECISION_WAIT + 5)
        yield s
    finally:
        factory.stop_all()
        proxy.stop()
        collector.stop()
        jaeger.stop()


def whole(spans: list[JaegerSpan], job: dict) -> bool:
    """The job's own spans are all there: the submit at the gateway and every run at the worker."""
    runs = [s for s in spans if s.name == f"run/offload.{job['type']}.run"]
    return any(s.name == f"POST /v1/jobs/{job['type']}" for s in spans) and len(runs) == job["attempts"]


def test_the_jobs_ended_as_meant(scenario: Scenario):
    states = {kind: {j["state"] for j in jobs} for kind, jobs in scenario.jobs.items()}
    assert states == {"failed-llm": {"failed"}, "failed-ocr": {"failed"}, "dead": {"dead"},
                      "retried": {"succeeded"}, "slow": {"succeeded"}, "ordinary": {"succeeded"}}
    assert {j["attempts"] for j in scenario.jobs["retried"] + scenario.jobs["dead"]} == {2}


@pytest.mark.parametrize("kind", ["failed-llm", "failed-ocr", "dead", "retried", "slow"])
def test_every_interesting_jobs_trace_is_kept_whole(scenario: Scenario, kind: str):
    for job in scenario.jobs[kind]:
        spans = scenario.jaeger.trace(job["trace_id"])
        assert spans and whole(spans, job), f"{kind} job {job['id']} ({job['state']}):\n{render_tree(spans)}"
    job = scenario.jobs[kind][0]
    print(f"\nkept, {kind}: job {job['id']} trace {job['trace_id']}\n{render_tree(scenario.jaeger.trace(job['trace_id']))}")


def test_failed_runs_say_so_on_their_span(scenario: Scenario):
    for kind, outcome in (("failed-ocr", "failed"), ("failed-llm", "failed"), ("dead", "dead")):
        job = scenario.jobs[kind][0]
        runs = [s for s in scenario.jaeger.trace(job["trace_id"]) if s.name.startswith("run/")]
        last = max(runs, key=lambda s: s.start_ns)
        assert (last.status, last.attributes.get("offload.outcome")) == ("ERROR", outcome)
        assert last.attributes["offload.attempt"] == job["attempts"]


def test_ordinary_jobs_are_sampled_at_about_one_percent(scenario: Scenario):
    kept = [j for j in scenario.jobs["ordinary"] if scenario.jaeger.trace(j["trace_id"])]
    print(f"\nordinary jobs kept at 1%: {len(kept)} of {len(scenario.jobs['ordinary'])}")
    # At 1%, 10 or more of 100 happens with odds of about 1 in 10^8: more means no sampling.
    assert len(kept) < 10
    for job in kept:
        assert whole(scenario.jaeger.trace(job["trace_id"]), job)
