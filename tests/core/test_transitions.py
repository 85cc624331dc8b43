"""The state machine has one source, `offload_core.types.TRANSITIONS`: every script that moves a
job is run from every state against a real Redis, and the moves the scripts make are exactly the
table's, none outside it and none of its moves missing."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import pytest
import redis

from offload_core.jobs import keys, scripts
from offload_core.jobs.record import Job
from offload_core.jobs.store import JobStore, connect
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.settings import Settings
from offload_core.types import TRANSITIONS, JobState

OWNER, OTHER = "host-a:1:owner", "host-b:2:other"
# What the runner records at the end of a run (WorkerJobStore.finish).
RUN_OUTCOMES = (JobState.SUCCEEDED, JobState.FAILED, JobState.RETRYING, JobState.DEAD, JobState.CANCELLED)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url)


def _seed(r: redis.Redis, state: JobState, *, at_last_attempt: bool, cancel_requested: bool, leased: bool) -> str:
    job_id = str(uuid.uuid4())
    record = {"id": job_id, "type": "llm", "tenant": "t1", "priority": "normal", "state": state.value,
              "attempts": 3 if at_last_attempt else 1, "max_attempts": 3, "created_at": repr(time.time()),
              "params": "{}", "cancel_requested": "1" if cancel_requested else "0"}
    if state is JobState.RUNNING:
        record["worker"] = OWNER
        if leased:
            r.set(keys.lease(job_id), OWNER, px=60_000)
    r.hset(keys.job(job_id), mapping=record)
    r.set(keys.payload(job_id), b'{"prompt":"x"}')
    return job_id


def _actions(settings: Settings, r: redis.Redis):
    worker = WorkerJobStore(connect_sync(settings), settings)
    rescue = scripts.RESCUE.register(r)

    def api(call):
        async def go():
            store = JobStore(connect(settings), settings)
            try:
                return await call(store)
            finally:
                await store.redis.aclose()
        return asyncio.run(go())

    def finish(outcome):
        def act(job_id):
            job = Job.from_hash(r.hgetall(keys.job(job_id)))
            worker.finish(job, OWNER, outcome, result={"ok": True} if outcome is JobState.SUCCEEDED else None,
                          error=None if outcome is JobState.SUCCEEDED else {"type": "E", "message": "m",
                                                                              "retryable": True},
                          retry_at=time.time() + 60)
        return act

    def rescue_as(how):
        def act(job_id):
            index = keys.RUNNING if how == "running" else keys.PENDING
            r.zadd(index, {job_id: 1.0})
            rescue(job_key=keys.job(job_id), index_key=index, queue_key="llm.normal", events_key=keys.events(job_id),
                   counters_key=keys.COUNTERS, lease_key=keys.lease(job_id), pending_key=keys.PENDING,
                   job_id=job_id, since="1.0", message="{}", now=repr(time.time()), events_maxlen=100, how=how)
        return act

    return {
        "claim by the lease holder": lambda job_id: worker.claim(job_id, OWNER, tenant="t1"),
        "claim by another worker": lambda job_id: worker.claim(job_id, OTHER, tenant="t1"),
        "claim replacing a dead holder": lambda job_id: worker.claim(job_id, OTHER, tenant="t1",
                                                                     replace_holder=OWNER),
        **{f"finish as {o.value}": finish(o) for o in RUN_OUTCOMES},
        "cancel": lambda job_id: api(lambda store: store.cancel(job_id, "t1")),
        "requeue": lambda job_id: api(lambda store: store.requeue(job_id, "t1")),
        "rescue a waiting job": rescue_as("waiting"),
        "rescue a running job": rescue_as("running"),
    }


def test_the_scripts_make_exactly_the_moves_of_the_transition_table(settings):
    r = redis.Redis.from_url(settings.redis_url)
    made: dict[tuple[JobState, JobState], str] = {}
    for (name, act), state, last, cancel, leased in itertools.product(
            _actions(settings, r).items(), JobState, (False, True), (False, True), (False, True)):
        job_id = _seed(r, state, at_last_attempt=last, cancel_requested=cancel, leased=leased)
        act(job_id)
        after = JobState(r.hget(keys.job(job_id), "state").decode())
        if after is not state:
            made.setdefault((state, after), name)
    table = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    outside = {move: name for move, name in made.items() if move not in table}
    assert not outside, f"moves the scripts make that TRANSITIONS does not list: {outside}"
    assert table - set(made) == set(), "moves in TRANSITIONS that no script makes"
