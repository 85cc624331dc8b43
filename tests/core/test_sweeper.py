"""The lost-message sweep against a real Redis: a job whose message vanished between a worker's
BRPOP and kombu's record of it is queued again, once; a job whose message is anywhere it should
be (a queue list, kombu's unacknowledged hash) is left alone."""

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
from offload_core.maintenance import sweeper
from offload_core.maintenance.sweeper import LostMessageSweeper
from offload_core.queue import broker
from offload_core.settings import Settings
from offload_core.types import JobState, JobType, Priority

INTERVAL = 30.0


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url)


@pytest.fixture
def r(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def _submit_many(settings: Settings, n: int, priority: Priority = Priority.NORMAL) -> list[str]:
    async def go() -> list[str]:
        store = JobStore(connect(settings), settings)
        try:
            out = []
            for i in range(n):
                new = NewJob(type=JobType.LLM, tenant="t1", priority=priority,
                             payload=json.dumps({"prompt": f"p{i}"}).encode(), params={"model": "m"})
                out.append((await store.submit(new)).job_id)
            return out
        finally:
            await store.redis.aclose()
    return asyncio.run(go())


def _sweep(settings: Settings, *, after: float = INTERVAL + 1) -> sweeper.SweepReport:
    """One sweep, as if `after` seconds had passed since now."""
    async def go() -> sweeper.SweepReport:
        store = JobStore(connect(settings), settings)
        try:
            sweep = LostMessageSweeper(store, interval_seconds=INTERVAL, confirm_delay_seconds=0.01)
            return await sweep.sweep_once(now=time.time() + after)
        finally:
            await store.redis.aclose()
    return asyncio.run(go())


def _ids(r: redis.Redis, queue: str) -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in r.lrange(queue, 0, -1)]


def _take_and_lose(r: redis.Redis, queue: str) -> str:
    """What a worker killed between its BRPOP and kombu's unacked write leaves behind."""
    _, raw = r.brpop([queue], timeout=1)
    return json.loads(raw)["headers"]["id"]


def _take_and_hold(redis_url: str, queue: str) -> str:
    """What a worker that took a message, recorded it as unacknowledged and died leaves behind:
    kombu's own code (the workers' transport) takes and records it; nobody acknowledges it or,
    as a live worker would at shutdown, gives it back."""
    with Connection(redis_url, transport=broker.TRANSPORT) as conn:
        channel = conn.channel()
        channel.qos.restore_at_shutdown = False
        message = channel.basic_get(queue, no_ack=False)
        return message.headers["id"]


def test_a_lost_message_is_put_back_at_the_head_of_its_queue_once(settings, r):
    ids = _submit_many(settings, 4)
    lost = _take_and_lose(r, "llm.normal")
    held = _take_and_hold(settings.redis_url, "llm.normal")
    assert lost == ids[0] and held == ids[1]

    report = _sweep(settings)

    assert report.overdue == 4 and report.rescued == [lost]
    assert _ids(r, "llm.normal") == [ids[3], ids[2], lost]  # BRPOP takes from the right: next
    assert int(r.hget(keys.COUNTERS, "llm:rescued")) == 1
    kinds = [json.loads(f[b"data"]).get("message") for _, f in r.xrange(keys.events(lost))]
    assert kinds[-1] == "the queue message was lost; queued again"
    assert r.hget(keys.job(lost), b"state") == b"queued"
    # Found the second time round: not rescued again.
    assert _sweep(settings).rescued == []
    assert r.llen("llm.normal") == 3 and int(r.hget(keys.COUNTERS, "llm:rescued")) == 1


def test_the_rescued_message_runs_the_job_once_and_leaves_the_sweep_nothing_to_do(settings, r):
    (job_id,) = _submit_many(settings, 1)
    _take_and_lose(r, "llm.normal")
    assert _sweep(settings).rescued == [job_id]
    assert _take_and_lose(r, "llm.normal") == job_id  # a worker takes the new message...
    worker = WorkerJobStore(connect_sync(settings), settings)
    claim = worker.claim(job_id, "host:1:a", JobType.LLM)  # ...and runs the job
    assert claim.status == "claimed" and claim.job.attempts == 1
    assert r.zscore(keys.PENDING, job_id) is None
    assert _sweep(settings).overdue == 0
    assert worker.finish(claim.job, "host:1:a", JobState.SUCCEEDED, result={"ok": True})
    assert r.hget(keys.job(job_id), b"result_writes") == b"1"


def test_a_job_that_has_not_waited_an_interval_is_not_looked_for(settings, r):
    (job_id,) = _submit_many(settings, 1)
    _take_and_lose(r, "llm.normal")
    report = _sweep(settings, after=0)
    assert report.overdue == 0 and report.messages_read == 0 and report.rescued == []
    assert r.llen("llm.normal") == 0


def test_messages_are_found_across_chunks_and_priorities(settings, r, monkeypatch):
    monkeypatch.setattr(sweeper, "CHUNK", 7)  # many chunks from a few messages
    normal = _submit_many(settings, 20)
    high = _submit_many(settings, 9, Priority.HIGH)
    lost = [_take_and_lose(r, "llm.normal"), _take_and_lose(r, "llm.high")]
    held = [_take_and_hold(settings.redis_url, "llm.normal") for _ in range(8)]

    report = _sweep(settings)

    assert sorted(report.rescued) == sorted(lost) == sorted([normal[0], high[0]])
    assert report.messages_read >= 2 * 27  # every message, both looks
    on_queues = _ids(r, "llm.normal") + _ids(r, "llm.high")
    assert sorted(on_queues + held) == sorted(normal + high)  # one message per job, no more


def test_a_retrying_job_is_not_looked_for_until_the_mover_queues_it(settings, r):
    """A retrying job has no message anywhere until its backoff ends (the message waits in its
    record), so the sweep leaves it alone; once queued, a lost message is rescued as any other."""
    (job_id,) = _submit_many(settings, 1)
    _take_and_lose(r, "llm.normal")  # the first delivery, taken properly
    worker = WorkerJobStore(connect_sync(settings), settings)
    claim = worker.claim(job_id, "host:1:a", JobType.LLM)
    retry_at = time.time() + 100
    assert worker.finish(claim.job, "host:1:a", JobState.RETRYING, message="retry-message", message_tag="t2",
                         error={"type": "Busy", "message": "try later", "retryable": True}, retry_at=retry_at)
    assert r.zscore(keys.DELAYED, job_id) == pytest.approx(retry_at)
    assert _sweep(settings, after=INTERVAL + 101).rescued == []


def test_a_job_that_moved_on_is_dropped_from_the_sweep_not_rescued(settings, r):
    ids = _submit_many(settings, 2)
    _take_and_lose(r, "llm.normal")
    _take_and_lose(r, "llm.normal")
    # One was cancelled, one expired with its message gone: neither has anything left to run.
    r.hset(keys.job(ids[0]), "state", "cancelled")
    r.delete(keys.job(ids[1]))
    report = _sweep(settings)
    assert report.rescued == [] and r.llen("llm.normal") == 0
    assert r.zcard(keys.PENDING) == 0
