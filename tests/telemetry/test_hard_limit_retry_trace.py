"""A job killed at its hard time limit is retried in its own trace.

Celery kills the job's process and calls the task's `on_failure` in the worker's main process,
which records the retry with the message that will run it (`JobRunner.on_hard_time_limit`). That
process has no tracer and the killed run's context is gone, so the message gets its
`traceparent` from the trace id the job's record keeps. Here the test plays the killed worker: it takes the message,
claims the run, and makes the main process's call itself; a real worker then runs the retry.
"""

from __future__ import annotations

import json

import redis

from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.queue.celery_app import make_celery
from offload_core.settings import Settings
from offload_core.types import JobType
from offload_core.worker.runner import JobRunner
from tests.support.platform import PlatformFactory
from tests.telemetry.conftest import otel_env
from tests.telemetry.otlp_receiver import OtlpReceiver, render_tree
from tests.worker_llm.llm_peer import ScriptedPeer, good_stream

JOB_ID_ATTRIBUTE = "offload.job_id"
HARD_LIMIT = 8


def test_the_retry_after_a_hard_time_limit_kill_runs_in_the_jobs_trace(
        platform_factory: PlatformFactory, otlp_receiver: OtlpReceiver, redis_url: str):
    peer = ScriptedPeer().start()
    peer.script = [good_stream("Hi", " there")]
    try:
        backend = {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": peer.base_url,
                   "OFFLOAD_LLM_MODEL": "peer-model"}
        platform = platform_factory.start(workers=(), env=otel_env(otlp_receiver))
        job = platform.submit_llm({"prompt": "Hi", "max_tokens": 4}).json()
        job_id, trace_id = job["id"], job["trace_id"]
        assert trace_id

        # The worker that took the message and started the run, until Celery killed its process.
        client = redis.Redis.from_url(redis_url)
        assert client.brpop(["llm.normal"], timeout=5)
        settings = Settings(env="dev", redis_url=redis_url, retry_backoff_base_seconds=0.2,
                            retry_backoff_max_seconds=1)
        assert WorkerJobStore(connect_sync(settings), settings).claim(job_id, "host:1:killed", JobType.LLM).status == "claimed"
        runner = JobRunner(make_celery(settings, JobType.LLM), JobType.LLM, lambda ctx: {}, settings)
        runner.on_hard_time_limit(job_id, HARD_LIMIT)

        record = platform.job(job_id)
        assert record["state"] == "retrying" and record["error"]["type"] == "TimeLimitExceeded", record
        # The retry waits in the delayed set, its message kept with the job (no Celery ETA message).
        raw = client.hget(f"offload:job:{job_id}", "message")
        headers = json.loads(raw)["headers"]
        assert headers["traceparent"].split("-")[1] == trace_id and not headers.get("eta"), headers

        platform_factory.start_worker("llm", platform_factory.env(**otel_env(otlp_receiver), **backend))
        done = platform.wait(job_id)
        assert done["state"] == "succeeded" and done["attempts"] == 2 and done["trace_id"] == trace_id, done

        def runs() -> list:
            return [s for s in otlp_receiver.trace(trace_id) if s.service == "offload-worker-llm"
                    and s.kind == "CONSUMER" and s.attributes.get(JOB_ID_ATTRIBUTE) == job_id]

        otlp_receiver.wait_for(runs, 30, "the retry's run span in the job's trace")
        assert len(runs()) == 1, render_tree(otlp_receiver.trace(trace_id))
    finally:
        peer.stop()
