"""The asyncio client against the real platform: the same calls, awaited, and jobs followed
concurrently on one event loop."""

from __future__ import annotations

import asyncio

import pytest

from offload_client import AsyncOffloadClient, AuthenticationError, JobState, StateEvent, TokenEvent
from tests.client.conftest import SHORT
from tests.support.platform import Platform


def test_async_submit_follow_and_wait_for_several_jobs_at_once(async_client: AsyncOffloadClient):
    async def scenario():
        async with async_client as offload:
            jobs = await asyncio.gather(*(offload.submit_llm(**SHORT) for _ in range(3)))
            assert len({j.id for j in jobs}) == 3

            async def events_of(job_id):
                return [e async for e in offload.events(job_id)]

            streams = await asyncio.gather(*(events_of(j.id) for j in jobs))
            finals = await asyncio.gather(*(offload.wait(j.id, timeout=120) for j in jobs))
            results = await asyncio.gather(*(offload.result(j.id) for j in jobs))
            return streams, finals, results

    streams, finals, results = asyncio.run(scenario())
    assert all(f.state is JobState.SUCCEEDED for f in finals)
    for events, result in zip(streams, results, strict=True):
        assert [e.state for e in events if isinstance(e, StateEvent)] == ["queued", "running", "succeeded"]
        assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == result["text"]


def test_async_cancel_retry_and_listing(async_client: AsyncOffloadClient, platform: Platform):
    # A probe job told to fail for good (admin keys may submit probes), retried by its tenant.
    failed_id = platform.http_post("/v1/jobs/probe", tenant="ops", json={"fail": "permanent"}).json()["id"]
    ops = AsyncOffloadClient(platform.gateway.url, status_url=platform.status.url, api_key=platform.keys["ops"])

    async def scenario():
        async with ops:
            failed = await ops.wait(failed_id, timeout=120)
            requeued = await ops.retry(failed_id)
        async with async_client as offload:
            long = await offload.submit_llm(prompt="Count to one thousand.", max_tokens=400, priority="low")
            cancelled = await offload.cancel(long.id)
            listed = [j.id async for j in offload.iter_jobs(type="llm", page_size=1)]
            queues = await offload.queues()
            return failed, requeued, cancelled, listed, queues, await offload.wait(long.id, timeout=120)

    failed, requeued, cancelled, listed, queues, long_final = asyncio.run(scenario())
    assert failed.state is JobState.FAILED and requeued.state is JobState.QUEUED
    assert cancelled.cancel_requested or cancelled.state is JobState.CANCELLED
    assert long_final.state is JobState.CANCELLED
    assert cancelled.id in listed and failed.id not in listed  # ops's job, not alice's
    assert "llm.low" in queues.queues


def test_async_bad_key_raises_authentication_error(platform):
    async def scenario():
        async with AsyncOffloadClient(platform.gateway.url, status_url=platform.status.url, api_key="nope") as bad:
            await bad.get_job("6f1c2a4e-8b0d-4f5a-9a51-0c2d3e4f5a6b")

    with pytest.raises(AuthenticationError) as refused:
        asyncio.run(scenario())
    assert refused.value.status == 401 and refused.value.detail
