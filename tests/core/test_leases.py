"""The lease keeper against a real Redis: one thread per process keeps every running job's
lease alive, and tells each job when it was cancelled or taken over."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from offload_core.jobs import keys
from offload_core.jobs.store import JobStore, NewJob, connect
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.settings import Settings
from offload_core.types import JobType, Priority
from offload_core.worker.leases import LeaseKeeper

WORKER = "host:1:a"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url, lease_seconds=2)


def _submit(settings: Settings, n: int) -> list[str]:
    async def go() -> list[str]:
        store = JobStore(connect(settings), settings)
        ids = [(await store.submit(NewJob(type=JobType.LLM, tenant="t1", priority=Priority.NORMAL,
                                          payload=b'{"prompt":"hi"}', params={}))).job_id for _ in range(n)]
        await store.redis.aclose()
        return ids

    return asyncio.run(go())


def _keepers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lease-keeper"]


def test_one_thread_renews_every_lease_and_tells_each_job_about_cancel_and_takeover(settings):
    ids = _submit(settings, 4)
    store = WorkerJobStore(connect_sync(settings), settings)
    for job_id in ids:
        assert store.claim(job_id, WORKER, JobType.LLM).status == "claimed"
    before = len(_keepers())
    keeper = LeaseKeeper(store, interval=0.3)
    leases = [keeper.hold(job_id, JobType.LLM, WORKER) for job_id in ids]
    assert len(_keepers()) == before + 1, "one keeper thread, whatever the number of jobs"

    store.redis.hset(keys.job(ids[0]), "cancel_requested", "1")  # what DELETE /v1/jobs/{id} does to a running job
    store.redis.hset(keys.job(ids[1]), "worker", "host:2:b")     # another worker took the run over
    keeper.release(leases[3])                                      # this job finished
    time.sleep(3.0)  # longer than the 2 s lease

    def lapses_in(job_id: str) -> float:
        return store.redis.zscore(keys.running(JobType.LLM), job_id) - time.time()

    assert leases[0].cancel_requested.is_set() and not leases[0].lost.is_set()
    assert leases[1].lost.is_set()
    assert lapses_in(ids[0]) > 0, "still renewed past its 2 s"
    assert lapses_in(ids[2]) > 1.0
    assert lapses_in(ids[3]) < 0, "a released lease is left to lapse"
    assert not any(lease.cancel_requested.is_set() or lease.lost.is_set() for lease in leases[2:])
