"""Following a job survives a cut connection: the client reconnects with Last-Event-ID and the
events it hands out are exactly the job's events, none lost and none twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from offload_client import AsyncOffloadClient, OffloadClient, StateEvent, TokenEvent
from tests.client.proxy import CuttableProxy
from tests.support.platform import Platform

LONG = {"prompt": "Write a long story about a lighthouse keeper.", "max_tokens": 60, "temperature": 0}


@pytest.fixture
def proxy(platform: Platform) -> Iterator[CuttableProxy]:
    p = CuttableProxy("127.0.0.1", platform.status.port)
    yield p
    p.close()


def assert_resumed_exactly(platform: Platform, proxy: CuttableProxy, job_id: str, seen, cut_after: str) -> None:
    truth = platform.events(job_id)  # the whole stream, read again directly
    assert [(e.id, e.kind) for e in seen] == [(event_id, kind) for event_id, kind, _ in truth]
    texts = [e.text for e in seen if isinstance(e, TokenEvent)]
    assert texts == [data["text"] for _, kind, data in truth if kind == "token"]
    assert isinstance(seen[-1], StateEvent) and seen[-1].state == "succeeded"
    resumed = [h for h in proxy.request_heads if f"/v1/jobs/{job_id}/events" in h and "last-event-id" in h.lower()]
    assert resumed, "the client never reconnected"
    # It resumed after the last event it had received (events already in flight when the
    # connection was cut may still have arrived), not from the start and not past the end.
    resumed_after = resumed[0].lower().split("last-event-id:", 1)[1].split("\r\n", 1)[0].strip()
    ids = [e.id for e in seen]
    assert ids.index(cut_after) <= ids.index(resumed_after) < len(ids) - 1


def test_sync_events_resume_after_the_connection_is_cut(platform: Platform, proxy: CuttableProxy):
    with OffloadClient(platform.gateway.url, status_url=proxy.url, api_key=platform.keys["alice"]) as client:
        job = client.submit_llm(**LONG)
        seen, cut_after = [], None
        for event in client.events(job.id):
            seen.append(event)
            if cut_after is None and isinstance(event, TokenEvent):
                cut_after = event.id
                proxy.cut()
    assert_resumed_exactly(platform, proxy, job.id, seen, cut_after)


def test_async_events_resume_after_the_connection_is_cut(platform: Platform, proxy: CuttableProxy):
    async def follow():
        async with AsyncOffloadClient(platform.gateway.url, status_url=proxy.url,
                                      api_key=platform.keys["alice"]) as client:
            job = await client.submit_llm(**LONG)
            seen, cut_after = [], None
            async for event in client.events(job.id):
                seen.append(event)
                if cut_after is None and isinstance(event, TokenEvent):
                    cut_after = event.id
                    proxy.cut()
            return job, seen, cut_after

    job, seen, cut_after = asyncio.run(follow())
    assert_resumed_exactly(platform, proxy, job.id, seen, cut_after)
