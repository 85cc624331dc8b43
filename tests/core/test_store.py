"""The job store against a real Redis: atomic submit, compare-and-set transitions, indexes."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import redis

from offload_core.jobs import keys
from offload_core.jobs.store import JobStore, NewJob, connect
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.settings import Settings
from offload_core.types import JobState, JobType, Priority


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url)


def run(coro):
    return asyncio.run(coro)


async def _submit(settings: Settings, **kw) -> tuple[JobStore, object]:
    store = JobStore(connect(settings), settings)
    new = NewJob(type=JobType.LLM, tenant=kw.pop("tenant", "t1"), priority=kw.pop("priority", Priority.HIGH),
                 payload=kw.pop("payload", b'{"prompt":"hi"}'), params={"model": "m"}, **kw)
    out = await store.submit(new)
    await store.redis.aclose()
    return store, out


def lapse(r: redis.Redis, job_id: str, job_type: JobType = JobType.LLM) -> None:
    """Make a running job's lease lapse, as when its worker stops renewing it."""
    r.zadd(keys.running(job_type), {job_id: 0})


def test_submit_writes_record_payload_and_one_celery_message_atomically(settings):
    _, out = run(_submit(settings))
    r = redis.Redis.from_url(settings.redis_url)
    assert out.status == "created"
    job = r.hgetall(keys.job(out.job_id))
    assert job[b"state"] == b"queued" and job[b"tenant"] == b"t1" and job[b"queue"] == b"llm.high"
    assert job[b"payload"] == b'{"prompt":"hi"}' and job[b"payload_bytes"] == b"15"
    assert r.llen("llm.high") == 1 and r.llen("llm.normal") == 0
    message = json.loads(r.lindex("llm.high", 0))
    assert message["headers"]["id"] == out.job_id and message["headers"]["task"] == "offload.llm.run"
    assert json.loads(base64.b64decode(message["body"]))[0] == [out.job_id, "t1"]  # the tenant saves the worker a read
    assert message["properties"]["delivery_info"] == {"exchange": "", "routing_key": "llm.high"}
    assert message["properties"]["delivery_tag"] == job[b"message_tag"].decode()  # the reaper can drop it
    assert r.ttl(keys.job(out.job_id)) == -1, "an unfinished job never expires"
    assert r.hmget(keys.tenant_usage("t1"), "active", "bytes") == [b"1", b"15"]


def test_concurrent_submits_share_round_trips_and_each_gets_its_own_job(settings):
    """Group commit (script_batch): 40 submits at once, each answered with its own stored job,
    its own message and its own outcome (one tenant's rate limit lets 30 in)."""
    settings = settings.model_copy(update={"rate_limit_per_minute": 30})

    async def scenario():
        store = JobStore(connect(settings), settings)
        jobs = [NewJob(type=JobType.LLM, tenant="t1", priority=Priority.NORMAL,
                       payload=f'{{"prompt":"{i}"}}'.encode(), params={"n": i}) for i in range(40)]
        outs = await asyncio.gather(*(store.submit(job) for job in jobs))
        await store.redis.aclose()
        return store._submit.pipelines_sent, outs

    pipelines, outs = run(scenario())
    assert pipelines < 40
    created = [(i, out) for i, out in enumerate(outs) if out.status == "created"]
    assert len(created) == 30 and [out.status for out in outs].count("rate_limited") == 10
    r = redis.Redis.from_url(settings.redis_url)
    for i, out in created:
        assert r.hget(keys.job(out.job_id), "payload") == f'{{"prompt":"{i}"}}'.encode()
        assert json.loads(r.hget(keys.job(out.job_id), "params")) == {"n": i}
    queued = {json.loads(m)["headers"]["id"] for m in r.lrange("llm.normal", 0, -1)}
    assert queued == {out.job_id for _, out in created}


def test_idempotency_key_returns_existing_job_or_conflict_on_other_body(settings):
    _, first = run(_submit(settings, idempotency_key="k1"))
    _, again = run(_submit(settings, idempotency_key="k1"))
    _, other = run(_submit(settings, idempotency_key="k1", payload=b'{"prompt":"other"}'))
    assert (again.status, again.job_id) == ("existing", first.job_id)
    assert (other.status, other.job_id) == ("conflict", first.job_id)
    assert redis.Redis.from_url(settings.redis_url).llen("llm.high") == 1


def test_a_second_worker_cannot_claim_a_leased_job_nor_finish_it(settings):
    _, out = run(_submit(settings))
    w = WorkerJobStore(connect_sync(settings), settings)
    first = w.claim(out.job_id, "hostA:1:a", JobType.LLM)
    second = w.claim(out.job_id, "hostB:2:b", JobType.LLM)
    assert first.status == "claimed" and first.job.attempts == 1 and first.payload == b'{"prompt":"hi"}'
    assert second.status == "leased" and second.holder == "hostA:1:a" and second.lease_seconds_left > 0
    assert w.finish(first.job, "hostB:2:b", JobState.SUCCEEDED, result={"x": 1}) is False
    assert w.finish(first.job, "hostA:1:a", JobState.SUCCEEDED, result={"x": 1}) is True
    assert w.finish(first.job, "hostA:1:a", JobState.SUCCEEDED, result={"x": 2}) is False  # duplicate
    job = w.get(out.job_id)
    assert job.state is JobState.SUCCEEDED and job.result_writes == 1
    assert json.loads(w.redis.hget(keys.job(out.job_id), "result")) == {"x": 1}
    assert w.redis.hget(keys.job(out.job_id), "payload") == b""  # dropped once succeeded
    assert 0 < w.redis.ttl(keys.job(out.job_id)) <= settings.retention_seconds  # retention runs from the end
    assert w.claim(out.job_id, "hostC:3:c", JobType.LLM).status == "terminal"


def test_an_expired_lease_lets_another_worker_take_the_run_and_the_old_one_loses_it(settings):
    settings = settings.model_copy(update={"lease_seconds": 2})
    _, out = run(_submit(settings))
    w = WorkerJobStore(connect_sync(settings), settings)
    old = w.claim(out.job_id, "hostA:1:a", JobType.LLM).job
    lapse(w.redis, out.job_id)  # the lease lapsed: hostA stopped renewing it
    new = w.claim(out.job_id, "hostB:2:b", JobType.LLM)
    assert new.status == "claimed" and new.job.attempts == 2
    assert w.heartbeat(out.job_id, JobType.LLM, "hostA:1:a") == (False, False)
    assert w.progress(out.job_id, "hostA:1:a", 1, 2, "") == -1
    assert w.finish(old, "hostA:1:a", JobState.SUCCEEDED, result={}) is False
    assert w.finish(new.job, "hostB:2:b", JobState.SUCCEEDED, result={}) is True


def test_run_lost_on_the_last_attempt_is_claimed_to_be_ended_not_run(settings):
    settings = settings.model_copy(update={"llm_max_attempts": 1})
    _, out = run(_submit(settings))
    w = WorkerJobStore(connect_sync(settings), settings)
    w.claim(out.job_id, "hostA:1:a", JobType.LLM)
    lapse(w.redis, out.job_id)
    claim = w.claim(out.job_id, "hostB:2:b", JobType.LLM)
    assert (claim.status, claim.intent, claim.job.attempts) == ("claimed", "lost", 1)  # the runner ends it
    assert w.redis.xlen(keys.events(out.job_id)) == 1, "no second `running` event: it is not run"
    assert w.finish(claim.job, "hostB:2:b", JobState.DEAD,
                    error={"type": "WorkerLost", "message": "lost", "retryable": True}) is True
    job = w.get(out.job_id)
    assert job.state is JobState.DEAD and job.error.type == "WorkerLost"
    assert w.redis.zscore(keys.DEAD, out.job_id) is not None
    assert w.redis.zscore(keys.tenant_dead("t1"), out.job_id) is not None
    assert w.redis.hmget(keys.tenant_usage("t1"), "active", "bytes") == [b"0", b"0"]


def test_cancel_queued_is_immediate_running_is_requested_finished_is_refused(settings):
    store, out = run(_submit(settings))

    async def cancel(job_id):
        s = JobStore(connect(settings), settings)
        try:
            return await s.cancel(job_id, "t1")
        finally:
            await s.redis.aclose()

    assert run(cancel(out.job_id)) == ("cancelled", "cancelled")
    w = WorkerJobStore(connect_sync(settings), settings)
    assert w.redis.zscore(keys.PENDING, out.job_id) is None  # nothing left for the lost-message sweep
    assert w.claim(out.job_id, "h:1:a", JobType.LLM).status == "terminal"
    _, second = run(_submit(settings))
    job = w.claim(second.job_id, "h:1:a", JobType.LLM).job
    assert run(cancel(second.job_id)) == ("cancelling", None)
    assert w.heartbeat(second.job_id, JobType.LLM, "h:1:a") == (True, True)
    assert w.finish(job, "h:1:a", JobState.CANCELLED) is True
    assert run(cancel(second.job_id)) == ("terminal", "cancelled")


def test_listing_pages_through_every_job_once_with_filters(settings):
    ids = [run(_submit(settings)).__getitem__(1).job_id for _ in range(7)]

    async def page_all(**filters):
        s = JobStore(connect(settings), settings)
        seen, cursor = [], None
        try:
            while True:
                jobs, cursor = await s.list_jobs("t1", cursor=cursor, limit=3, **filters)
                seen += [j.id for j in jobs]
                if cursor is None:
                    return seen
        finally:
            await s.redis.aclose()

    assert run(page_all(state=None, job_type=None)) == list(reversed(ids))
    assert run(page_all(state=JobState.SUCCEEDED, job_type=None)) == []
    assert run(page_all(state=JobState.QUEUED, job_type=JobType.LLM)) == list(reversed(ids))
