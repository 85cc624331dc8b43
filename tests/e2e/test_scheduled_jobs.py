"""Scheduled jobs end to end: `run_at` / `delay_seconds` on submit, the `scheduled` state until
the job's time, then the delayed-set mover queues it; cancel before the time; jobs that wait
longer than the retention still run (an unfinished job never expires)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import redis

from tests.support.documents import png_document
from tests.support.processes import wait_for

ADMIN = "ops"


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def test_a_delayed_job_is_scheduled_until_its_time_then_queued_and_run(platform):
    r = platform.submit_llm({"prompt": "Hi", "max_tokens": 2, "delay_seconds": 2})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "scheduled" and body["run_at"] is not None and body["queued_at"] is None
    listed = httpx.get(f"{platform.status.url}/v1/jobs", params={"state": "scheduled"},
                       headers=platform.headers()).json()["jobs"]
    assert [j["id"] for j in listed] == [body["id"]]
    done = platform.wait(body["id"], timeout=60)
    assert done["state"] == "succeeded"
    assert _ts(done["queued_at"]) >= _ts(body["run_at"]) - 0.05, "queued no earlier than its time"
    states = [d["state"] for _, kind, d in platform.events(body["id"]) if kind == "state"]
    assert states == ["scheduled", "queued", "running", "succeeded"]


def test_run_at_needs_an_offset_and_a_time_within_the_limit(apis):
    def submit(**schedule):
        return apis.submit_llm({"prompt": "Hi", **schedule})

    for bad, why in [({"run_at": "2030-01-01T10:00:00"}, "offset"), ({"run_at": "tomorrow"}, "RFC 3339"),
                     ({"delay_seconds": -1}, "delay_seconds"), ({"delay_seconds": 31 * 86400}, "delay_seconds"),
                     ({"run_at": _rfc3339(time.time() + 31 * 86400)}, "at most"),
                     ({"run_at": _rfc3339(time.time() + 60), "delay_seconds": 5}, "not both")]:
        r = submit(**bad)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (bad, r.text)
        assert why in r.json()["detail"], (bad, r.json())
    ok = submit(run_at=(datetime.now(timezone(timedelta(hours=2))) + timedelta(hours=1)).isoformat())
    assert ok.status_code == 202 and ok.json()["state"] == "scheduled"
    # An OCR upload takes the same fields as form fields.
    form = apis.submit_ocr(png_document().data, fields={"delay_seconds": "3600"})
    assert form.status_code == 202 and form.json()["state"] == "scheduled", form.text


def test_a_scheduled_job_cancelled_before_its_time_never_runs(platform, redis_server):
    job_id = platform.submit_llm({"prompt": "Hi", "max_tokens": 2, "delay_seconds": 2}).json()["id"]
    r = httpx.delete(f"{platform.gateway.url}/v1/jobs/{job_id}", headers=platform.headers())
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    time.sleep(3.5)
    job = platform.job(job_id)
    assert job["state"] == "cancelled" and job["attempts"] == 0 and job["started_at"] is None


@pytest.mark.slow
def test_jobs_scheduled_over_ten_seconds_start_in_order_each_within_a_second(platform_factory):
    platform = platform_factory.start(workers=("ocr",), env={"OFFLOAD_WORKER_CONCURRENCY": "1"})
    start = time.time() + 3
    times = [start + i * 0.1 for i in range(100)]
    ids = [platform.submit_probe({"run_at": _rfc3339(t)}).json()["id"] for t in times]
    for job_id in ids:
        platform.wait(job_id, timeout=60, tenant=ADMIN)
    jobs = [platform.job(j, ADMIN) for j in ids]
    assert all(j["state"] == "succeeded" for j in jobs)
    started = [_ts(j["started_at"]) for j in jobs]
    late = [s - _ts(j["run_at"]) for s, j in zip(started, jobs)]
    assert started == sorted(started), "they started in the order of their times"
    assert min(late) >= -0.05 and max(late) < 1.0, f"start-time error: min {min(late):.3f} s, max {max(late):.3f} s"
    print(f"scheduled start error over 100 jobs: median {sorted(late)[50]:.3f} s, max {max(late):.3f} s")


@pytest.mark.slow
def test_jobs_that_wait_longer_than_the_retention_still_run_and_free_their_quota(platform_factory, redis_url):
    store = redis.Redis.from_url(redis_url)
    env = {"OFFLOAD_RETENTION_SECONDS": "10"}
    apis = platform_factory.start(workers=(), env=env)
    queued = apis.submit_llm({"prompt": "Hi", "max_tokens": 2}).json()["id"]
    scheduled = apis.submit_llm({"prompt": "Hi", "max_tokens": 2, "delay_seconds": 14}).json()["id"]
    assert store.ttl(f"offload:job:{queued}") == -1 and store.ttl(f"offload:job:{scheduled}") == -1
    time.sleep(12)  # past the retention, with no worker to run anything
    assert apis.job(queued)["state"] == "queued" and apis.job(scheduled)["state"] == "scheduled"
    platform_factory.start_worker("llm", platform_factory.env(**env))
    for job_id in (queued, scheduled):
        assert apis.wait(job_id, timeout=90)["state"] == "succeeded"
    assert store.hmget("offload:tenant:alice:usage", "active", "bytes") == [b"0", b"0"]
    for job_id in (queued, scheduled):
        assert 0 < store.ttl(f"offload:job:{job_id}") <= 10, "retention counts from the end"
    wait_for(lambda: store.exists(f"offload:job:{queued}") == 0, 15, "the finished job to expire")
