"""How an LLM job's tokens become events, against a real Redis: the first token at once (it is
what the user waits for), later ones batched (one Redis write per ~50 ms, not one per token)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from offload_core.jobs import keys
from offload_core.jobs.store import JobStore, NewJob, connect
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.settings import Settings
from offload_core.types import JobType, Priority
from offload_core.worker.leases import Lease
from offload_core.worker.runner import _Context

WORKER = "host:1:a"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url)


def _running_job_context(settings: Settings) -> tuple[_Context, WorkerJobStore, str]:
    async def submit() -> str:
        store = JobStore(connect(settings), settings)
        out = await store.submit(NewJob(type=JobType.LLM, tenant="t1", priority=Priority.NORMAL,
                                        payload=b'{"prompt":"hi"}', params={}))
        await store.redis.aclose()
        return out.job_id

    job_id = asyncio.run(submit())
    store = WorkerJobStore(connect_sync(settings), settings)
    claim = store.claim(job_id, WORKER, JobType.LLM)
    assert claim.status == "claimed"
    lease = Lease(job_id, JobType.LLM, WORKER)  # not renewed by a keeper: never cancelled, never lost
    return _Context(store, claim.job, WORKER, claim.payload, settings, lease), store, job_id


def _token_events(store: WorkerJobStore, job_id: str) -> list[str]:
    return [json.loads(fields[b"data"])["text"] for _, fields in store.redis.xrange(keys.events(job_id))
            if fields[b"kind"] == b"token"]


def test_the_first_token_is_written_at_once_and_the_next_ones_in_one_batch(settings):
    ctx, store, job_id = _running_job_context(settings)
    ctx.tokens("Red")
    assert _token_events(store, job_id) == ["Red"]
    ctx.tokens(", green")
    ctx.tokens(", blue")
    assert _token_events(store, job_id) == ["Red"], "tokens right after a write wait for the batch"
    time.sleep(ctx.TOKEN_FLUSH_SECONDS * 1.5)
    ctx.tokens(".")
    assert _token_events(store, job_id) == ["Red", ", green, blue."]
    ctx.tokens(" Done")
    ctx.flush()  # what the runner does when the handler returns
    assert "".join(_token_events(store, job_id)) == "Red, green, blue. Done"
