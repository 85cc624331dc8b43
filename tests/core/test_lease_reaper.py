"""The lease reaper against a real Redis: a running job whose lease lapsed goes back to the head
of its queue with a new message, and kombu's unacknowledged copy of the old one is dropped; a
live lease is left alone; a lost last attempt ends dead, a lost cancelled run ends cancelled."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis
from kombu import Connection

from offload_core.jobs import keys
from offload_core.jobs.store import JobStore, NewJob, connect
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.maintenance.leases import LeaseReaper
from offload_core.queue import broker
from offload_core.settings import Settings
from offload_core.types import JobType, Priority

WORKER = "host-a:1:w"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url, lease_seconds=30, llm_max_attempts=2)


@pytest.fixture
def r(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def _submit(settings: Settings) -> str:
    async def go() -> str:
        store = JobStore(connect(settings), settings)
        try:
            new = NewJob(type=JobType.LLM, tenant="t1", priority=Priority.NORMAL, payload=b'{"prompt":"hi"}',
                         params={}, callback_url=None)
            return (await store.submit(new)).job_id
        finally:
            await store.redis.aclose()
    return asyncio.run(go())


def _take_and_run(settings: Settings, r: redis.Redis) -> str:
    """A worker takes the message with kombu's own code (it stays unacknowledged) and claims the job."""
    job_id = _submit(settings)
    with Connection(settings.redis_url, transport=broker.TRANSPORT) as conn:
        channel = conn.channel()
        channel.qos.restore_at_shutdown = False  # the worker dies: nobody gives the message back
        assert channel.basic_get("llm.normal", no_ack=False).headers["id"] == job_id
    claim = WorkerJobStore(connect_sync(settings), settings).claim(job_id, WORKER, JobType.LLM)
    assert claim.status == "claimed"
    return job_id


def _reap(settings: Settings, after: float) -> dict[str, int]:
    async def go() -> dict[str, int]:
        store = JobStore(connect(settings), settings)
        try:
            return await LeaseReaper(store.redis, settings, store.app).reap(now=time.time() + after)
        finally:
            await store.redis.aclose()
    return asyncio.run(go())


def test_a_lapsed_lease_puts_the_job_at_the_head_of_its_queue_and_drops_the_stale_message(settings, r):
    job_id = _take_and_run(settings, r)
    _submit(settings)  # another job waits on the same queue
    assert r.hlen(keys.KOMBU_UNACKED) == 1 and r.zcard(keys.KOMBU_UNACKED_INDEX) == 1

    assert _reap(settings, after=10) == {}, "the lease is still live"
    assert _reap(settings, after=31) == {"requeued": 1}

    assert r.hlen(keys.KOMBU_UNACKED) == 0 and r.zcard(keys.KOMBU_UNACKED_INDEX) == 0
    head = json.loads(r.lindex("llm.normal", -1))  # the next one a worker takes
    assert head["headers"]["id"] == job_id
    record = r.hgetall(keys.job(job_id))
    assert record[b"state"] == b"queued" and record[b"worker"] == b""
    assert head["properties"]["delivery_tag"] == record[b"message_tag"].decode()
    assert r.zscore(keys.running(JobType.LLM), job_id) is None and r.zscore(keys.PENDING, job_id) is not None
    last = json.loads(r.xrevrange(keys.events(job_id), count=1)[0][1][b"data"])
    assert last["state"] == "queued" and last["worker_lost"] is True
    assert r.hget(keys.COUNTERS, "llm:recovered") == b"1"
    # The lost run, should it come back, finds it is no longer its own.
    w = WorkerJobStore(connect_sync(settings), settings)
    assert w.heartbeat(job_id, JobType.LLM, WORKER) == (False, False)
    again = w.claim(job_id, "host-b:2:w", JobType.LLM)
    assert again.status == "claimed" and again.intent == "run" and again.job.attempts == 2


def test_a_run_lost_on_its_last_attempt_ends_dead_and_a_cancelled_one_cancelled(settings, r):
    last = _take_and_run(settings, r)
    r.hset(keys.job(last), "attempts", 2)  # its last attempt (max 2)
    cancelled = _take_and_run(settings, r)
    r.hset(keys.job(cancelled), "cancel_requested", "1")

    assert _reap(settings, after=31) == {"dead": 1, "cancelled": 1}

    dead = r.hgetall(keys.job(last))
    assert dead[b"state"] == b"dead" and json.loads(dead[b"error"])["type"] == "WorkerLost"
    assert r.zscore(keys.tenant_dead("t1"), last) is not None
    assert r.hget(keys.job(cancelled), "state") == b"cancelled"
    assert r.hmget(keys.tenant_usage("t1"), "active", "bytes") == [b"0", b"0"]
    assert r.llen("llm.normal") == 0 and r.hlen(keys.KOMBU_UNACKED) == 0
