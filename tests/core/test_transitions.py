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
from offload_core.jobs.store import JobStore, connect
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.settings import Settings
from offload_core.types import DELAYED_STATES, TRANSITIONS, JobState, JobType

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
              "params": "{}", "cancel_requested": "1" if cancel_requested else "0", "queue": "llm.normal",
              "payload": '{"prompt":"x"}', "payload_bytes": "14", "message_tag": "tag"}
    if state is JobState.RUNNING:
        record["worker"] = OWNER
        r.zadd(keys.running(JobType.LLM), {job_id: time.time() + (60 if leased else -1)})
    elif state in DELAYED_STATES:
        record["message"] = "{}"
        r.zadd(keys.DELAYED, {job_id: time.time() - (0 if leased else 1)})
    elif state is JobState.QUEUED:
        r.zadd(keys.PENDING, {job_id: 1.0})
    elif state is JobState.WAITING:  # a pipeline step waiting for one step before it
        record.update(message="{}", waits="1")
        r.zadd(keys.WAITING, {job_id: "+inf"})
    r.hset(keys.job(job_id), mapping=record)
    r.hincrby(keys.tenant_usage("t1"), "active", 1)
    return job_id


def _actions(settings: Settings, r: redis.Redis):
    worker = WorkerJobStore(connect_sync(settings), settings)
    sync = {name: getattr(scripts, name).register(r) for name in ("RESCUE", "MOVE", "FINISH")}

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
            job = worker.get(job_id)
            worker.finish(job, OWNER, outcome, result={"ok": True} if outcome is JobState.SUCCEEDED else None,
                          error=None if outcome is JobState.SUCCEEDED else {"type": "E", "message": "m",
                                                                              "retryable": True},
                          retry_at=time.time() + 60, message="{}", message_tag="t2")
        return act

    def lost(job_id):
        sync["FINISH"](**keys.finish_keys(job_id, JobType.LLM, "t1", "llm.normal"), mode="lost", worker_id="",
                       tenant="t1", new_state="", now=repr(time.time()), result_json="", error_json="null",
                       retry_at="", message="{}", message_tag="t3", events_maxlen=100, retention=600,
                       events_grace=60, tokens="")

    def move(job_id):
        sync["MOVE"](job_key=keys.job(job_id), events_key=keys.events(job_id), delayed_key=keys.DELAYED,
                     pending_key=keys.PENDING, queue_key="llm.normal", job_id=job_id, now=repr(time.time()),
                     events_maxlen=100)

    def rescue(job_id):
        sync["RESCUE"](job_key=keys.job(job_id), queue_key="llm.normal", events_key=keys.events(job_id),
                       counters_key=keys.COUNTERS, pending_key=keys.PENDING, job_id=job_id, since="1.0",
                       message="{}", message_tag="t4", now=repr(time.time()), events_maxlen=100)

    def step_before_succeeds(job_id):
        # The job waits for this one (finish.lua releases a step whose last wait ends).
        before = _seed(r, JobState.RUNNING, at_last_attempt=False, cancel_requested=False, leased=True)
        r.hset(keys.job(before), mapping={"pipeline_key": keys.pipeline("p1"), "pipeline_events":
                                          keys.pipeline_events("p1"), "step": "0", "next": f'["{keys.job(job_id)}"]'})
        r.hset(keys.pipeline("p1"), mapping={"total": "2", "open": "2"})
        finish(JobState.SUCCEEDED)(before)

    return {
        "claim by the lease holder": lambda job_id: worker.claim(job_id, OWNER, JobType.LLM),
        "claim by another worker": lambda job_id: worker.claim(job_id, OTHER, JobType.LLM),
        "claim replacing a dead holder": lambda job_id: worker.claim(job_id, OTHER, JobType.LLM,
                                                                     replace_holder=OWNER),
        **{f"finish as {o.value}": finish(o) for o in RUN_OUTCOMES},
        "cancel": lambda job_id: api(lambda store: store.cancel(job_id, "t1")),
        "requeue": lambda job_id: api(lambda store: store.requeue(job_id, "t1")),
        "recover a lost run": lost,
        "move when due": move,
        "rescue a lost message": rescue,
        "the step before it succeeds": step_before_succeeds,
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
