"""Against a real Redis: the delayed-set mover (scheduled jobs and retries queued at their time,
in order, once), reconciliation (quota counts recomputed from the jobs, ghosts removed, expired
ids trimmed) and dead letters per tenant (one bounded read, trimmed when records expire)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from offload_core.jobs import keys
from offload_core.jobs.store import JobStore, NewJob, connect
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.maintenance.mover import DelayedMover
from offload_core.maintenance.reconcile import QUOTA_DRIFT_JOBS, Reconciler
from offload_core.settings import Settings
from offload_core.types import JobState, JobType, Priority


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url, retention_seconds=100)


@pytest.fixture
def r(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def run(settings: Settings, work):
    async def go():
        store = JobStore(connect(settings), settings)
        try:
            return await work(store)
        finally:
            await store.redis.aclose()
    return asyncio.run(go())


def submit(settings: Settings, *, tenant: str = "t1", run_at: float | None = None, payload: bytes = b'{"prompt":"x"}',
           priority: Priority = Priority.NORMAL) -> str:
    new = NewJob(type=JobType.LLM, tenant=tenant, priority=priority, payload=payload, params={}, run_at=run_at)
    return run(settings, lambda store: store.submit(new)).job_id


def test_scheduled_jobs_are_queued_at_their_time_in_order_and_once(settings, r):
    now = time.time()
    later, sooner, cancelled = (submit(settings, run_at=now + d) for d in (60, 30, 45))
    assert r.llen("llm.normal") == 0 and r.zcard(keys.DELAYED) == 3
    assert run(settings, lambda store: store.cancel(cancelled, "t1")) == ("cancelled", "cancelled")

    def move(at: float) -> int:
        return run(settings, lambda store: DelayedMover(store.redis, settings).move_due(now=at))

    assert move(now + 10) == 0
    assert move(now + 61) == 2
    assert move(now + 62) == 0, "each is queued once"
    queued = [json.loads(m)["headers"]["id"] for m in reversed(r.lrange("llm.normal", 0, -1))]
    assert queued == [sooner, later], "in the order of their times"
    assert r.zcard(keys.DELAYED) == 0 and r.zscore(keys.PENDING, sooner) is not None
    assert r.hget(keys.job(sooner), "state") == b"queued" and r.hget(keys.job(sooner), "message") == b""
    assert r.hget(keys.job(cancelled), "state") == b"cancelled"


def test_a_retry_waits_in_the_delayed_set_with_its_message_then_runs_as_the_next_attempt(settings, r):
    job_id = submit(settings)
    r.delete("llm.normal")  # a worker took the message
    w = WorkerJobStore(connect_sync(settings), settings)
    claim = w.claim(job_id, "h:1:a", JobType.LLM)
    retry_at = time.time() + 5
    assert w.finish(claim.job, "h:1:a", JobState.RETRYING, error={"type": "E", "message": "m", "retryable": True},
                    retry_at=retry_at, message='{"the":"retry message"}', message_tag="tag-2")
    assert r.zscore(keys.DELAYED, job_id) == pytest.approx(retry_at)
    assert run(settings, lambda store: DelayedMover(store.redis, settings).move_due(now=retry_at + 0.1)) == 1
    assert r.lrange("llm.normal", 0, -1) == [b'{"the":"retry message"}']
    assert r.hget(keys.job(job_id), "message_tag") == b"tag-2"


def test_reconciliation_corrects_drifted_quota_counts_and_removes_ghosts(settings, r):
    ids = [submit(settings, payload=b"x" * 10) for _ in range(3)]
    submit(settings, tenant="t2", payload=b"y" * 7, run_at=time.time() + 600)
    r.hincrby(keys.tenant_usage("t1"), "active", 5)  # a leak: counts that no job explains
    r.hincrby(keys.tenant_usage("t1"), "bytes", 100)
    r.delete(keys.job(ids[0]))  # a record deleted by hand: its id is a ghost in the pending index

    report = run(settings, lambda store: Reconciler(store.redis, settings, tenants=lambda: ["t1", "t2"]).run_once())

    assert report.ghosts == 1 and r.zscore(keys.PENDING, ids[0]) is None
    assert report.drift == {"t1": (6, 110)}
    assert r.hmget(keys.tenant_usage("t1"), "active", "bytes") == [b"2", b"20"]
    assert r.hmget(keys.tenant_usage("t2"), "active", "bytes") == [b"1", b"7"]
    assert QUOTA_DRIFT_JOBS._value.get() == 6
    again = run(settings, lambda store: Reconciler(store.redis, settings, tenants=lambda: ["t1", "t2"]).run_once())
    assert again.drift == {} and again.unfinished == 3


def _make_dead(settings: Settings, tenant: str, n: int) -> list[str]:
    w = WorkerJobStore(connect_sync(settings), settings)
    ids = []
    for _ in range(n):
        job_id = submit(settings, tenant=tenant)
        claim = w.claim(job_id, "h:1:a", JobType.LLM)
        w.finish(claim.job, "h:1:a", JobState.DEAD, error={"type": "E", "message": "m", "retryable": True})
        ids.append(job_id)
    w.redis.delete("llm.normal")
    return ids


def test_a_tenant_reads_its_own_dead_letters_behind_a_thousand_of_another_tenants(settings, r):
    settings = settings.model_copy(update={"rate_limit_per_minute": 5000})
    (own,) = _make_dead(settings, "t1", 1)
    others = _make_dead(settings, "t2", 1000)
    jobs = run(settings, lambda store: store.dead_jobs("t1", limit=100))
    assert [j.id for j in jobs] == [own]
    admin = run(settings, lambda store: store.dead_jobs(None, limit=5))
    assert [j.id for j in admin] == list(reversed(others))[:5]

    # The records expire `retention` after death; reconciliation then trims both dead indexes, so
    # the dead count goes down as well as up.
    assert run(settings, lambda store: store.queue_stats())["dead"] == 1001
    run(settings, lambda store: Reconciler(store.redis, settings, tenants=lambda: ["t1", "t2"]).run_once(
        now=time.time() + 101))
    assert r.zcard(keys.DEAD) == 0 and r.zcard(keys.tenant_dead("t1")) == 0 and r.zcard(keys.tenant_dead("t2")) == 0
    assert run(settings, lambda store: store.queue_stats())["dead"] == 0
