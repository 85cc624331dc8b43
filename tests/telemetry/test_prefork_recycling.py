"""Prefork job processes recycled after every job still deliver every span and every count.

With `worker_max_tasks_per_child=1` each job runs in a fresh child that billiard ends with
`os._exit` right after the job: spans still buffered in that child are lost unless it flushes
on `worker_process_shutdown`, and counts kept in its memory are lost unless they live in the
multiprocess metrics directory. The jobs call the real llama.cpp server (OpenAI backend), so a
fresh child does not have to load a model first.
"""

from __future__ import annotations

import pytest

from tests.support.platform import PlatformFactory
from tests.support.processes import free_port, wait_for
from tests.telemetry.conftest import otel_env
from tests.telemetry.otlp_receiver import OtlpReceiver, ReceivedSpan, render_tree
from tests.telemetry.prom import scrape, value

JOBS = 20
PROMPT = {"prompt": "Hi", "max_tokens": 2, "temperature": 0, "model": "smollm2-135m-instruct"}


def complete(spans: list[ReceivedSpan]) -> bool:
    """gateway server span -> publish -> run -> llm.generate -> LLM call, each the parent of the next."""
    by_id = {s.span_id: s for s in spans}
    calls = [s for s in spans if s.kind == "CLIENT" and s.name == "POST"]
    if len(calls) != 1:
        return False
    chain = [calls[0]]
    while chain[-1].parent_span_id in by_id:
        chain.append(by_id[chain[-1].parent_span_id])
    names = [s.name for s in reversed(chain)]
    return chain[-1].parent_span_id is None and names == [
        "POST /v1/jobs/llm", "apply_async/offload.llm.run", "run/offload.llm.run", "llm.generate", "POST"]


@pytest.mark.slow
def test_twenty_jobs_in_children_recycled_after_each_job_give_twenty_complete_traces_and_counts(
        platform_factory: PlatformFactory, otlp_receiver: OtlpReceiver, llama_server: str):
    worker_port = free_port()
    platform = platform_factory.start(workers=("llm",), env=otel_env(otlp_receiver), worker_env={"llm": {
        "OFFLOAD_WORKER_HTTP_PORT": str(worker_port), "OFFLOAD_WORKER_POOL": "prefork",
        "OFFLOAD_WORKER_MAX_TASKS_PER_CHILD": "1", "OFFLOAD_WORKER_CONCURRENCY": "2",
        "OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": llama_server,
        # Longer than any child lives: its spans can only leave through the flush at its exit.
        "OTEL_BSP_SCHEDULE_DELAY": "600000"}})
    worker_url = platform.metrics_url("worker-llm")

    job_ids = []
    for _ in range(JOBS):
        r = platform.submit_llm(PROMPT)
        assert r.status_code == 202, r.text
        job_ids.append(r.json()["id"])
    jobs = [platform.wait(job_id, timeout=180) for job_id in job_ids]
    assert {job["state"] for job in jobs} == {"succeeded"}

    trace_ids = [job["trace_id"] for job in jobs]
    assert len(set(trace_ids)) == JOBS
    otlp_receiver.wait_for(lambda: all(complete(otlp_receiver.trace(t)) for t in trace_ids), 60,
                           "a complete trace for every job")
    runs = [s for t in trace_ids for s in otlp_receiver.trace(t) if s.name == "run/offload.llm.run"]
    assert len({s.attributes["offload.job_id"] for s in runs}) == JOBS
    print(f"\none of {JOBS} traces:\n{render_tree(otlp_receiver.trace(trace_ids[0]))}")

    # Every count was made in a child that no longer exists.
    wait_for(lambda: value(scrape(worker_url), "offload_jobs_finished_total", type="llm", priority="normal",
                           outcome="succeeded") == JOBS, 10, "the worker to report every finished job")
    worker = scrape(worker_url)
    assert value(worker, "offload_job_run_seconds_count", type="llm", outcome="succeeded") == JOBS
    assert value(worker, "offload_job_queue_wait_seconds_count", type="llm", priority="normal") == JOBS
    assert value(scrape(platform.metrics_url("gateway")), "offload_jobs_submitted_total", type="llm", priority="normal") == JOBS
