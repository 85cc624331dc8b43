"""GET /scaling/<job_type> on a real status process's metrics port over a real Redis: the queued
and running jobs of one type, what KEDA's metrics-api trigger reads. Jobs are submitted through the real
gateway; "running" is made the way a worker makes it: the message taken off the list (FIFO, as
kombu does) and the job claimed with the worker's own store."""

from __future__ import annotations

import httpx

from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.settings import Settings
from offload_core.types import JobType
from tests.support.documents import small_png
from tests.support.processes import API_ONLY_DB, RedisServer

PROMPT = {"prompt": "Hi", "max_tokens": 2}


def test_scaling_reports_queued_and_running_jobs_per_type_without_an_api_key(apis, redis_server: RedisServer) -> None:
    ocr_ids = [apis.submit_ocr(small_png(), "page.png", content_type="image/png").json()["id"] for _ in range(3)]
    llm_ids = [apis.submit_llm(PROMPT).json()["id"] for _ in range(2)]
    assert len(ocr_ids) == 3 and len(llm_ids) == 2

    settings = Settings(env="dev", redis_url=redis_server.db_url(API_ONLY_DB))
    worker = WorkerJobStore(connect_sync(settings), settings)
    for job_id in ocr_ids[:2]:  # an OCR worker takes the two oldest messages and starts them
        assert worker.redis.rpop("ocr.normal") is not None
        assert worker.claim(job_id, "host:1:w", JobType.OCR).status == "claimed"

    port = apis.metrics_url("status").removesuffix("/metrics")  # the metrics port, not the API's
    ocr = httpx.get(f"{port}/scaling/ocr", timeout=10)  # no Authorization header
    assert ocr.status_code == 200, ocr.text
    assert ocr.json() == {"job_type": "ocr", "queued": 1, "running": 2}
    assert httpx.get(f"{port}/scaling/llm", timeout=10).json() == {"job_type": "llm", "queued": 2, "running": 0}
    assert httpx.get(f"{port}/scaling/pdf", timeout=10).status_code == 404
    # The API port, which an Ingress routes, does not answer it.
    assert httpx.get(f"{apis.status.url}/scaling/ocr", timeout=10).status_code == 404

    # The queue view says what KEDA will want from the same numbers (concurrency 0 here: queue only).
    queues = httpx.get(f"{apis.status.url}/v1/queues", headers=apis.headers(), timeout=10).json()
    assert queues["workers"]["ocr"]["running"] == 2 and queues["workers"]["ocr"]["backlog"] == 1
