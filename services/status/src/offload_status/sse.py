"""Server-sent events for one job or pipeline: replay the stored events, then follow new ones live.

Each event carries its Redis stream id as the SSE `id`, so a client that reconnects with
`Last-Event-ID` continues exactly where it left off. The stream ends after the job's terminal
state event, or when its lifetime is up (`OFFLOAD_SSE_MAX_STREAM_SECONDS`): then it tells the
client to come back soon (`retry:`), and the client resumes from its last event.

Two separate steps: the replay reads the store (`JobStore.events`, whatever history the store
keeps for the job), the live part reads the process's hub (`event_hub.LiveEventHub`).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from offload_core.errors import StoreUnavailable
from offload_core.jobs import keys
from offload_core.jobs.events import is_terminal_event
from offload_core.jobs.store import JobStore
from offload_core.pipelines.store import PipelineStore
from offload_core.types import TERMINAL_STATES

from .event_hub import LiveEventHub
from .stream_slots import StreamSlot

EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
REPLAY_PAGE = 500
KEEPALIVE_SECONDS = 15  # without news, a comment line keeps proxies from closing the stream
RECONNECT_MS = 2000     # what a client waits after a stream that broke
# After a stream that ended at its lifetime the client comes back within this (spread out, so
# streams opened together do not all come back at once).
RESUME_MS = (250, 1000)


def format_event(event_id: str, kind: str, data: str) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n"


def stream_deadline(max_seconds: float) -> float:
    """When a stream opened now must end: its lifetime, less up to a tenth, so that streams
    opened together do not all end together."""
    return asyncio.get_running_loop().time() + max_seconds * random.uniform(0.9, 1.0)


async def job_event_stream(store: JobStore, hub: LiveEventHub, job_id: str, after: str,
                           deadline: float) -> AsyncIterator[str]:
    yield f"retry: {RECONNECT_MS}\n\n"
    cursor = after
    # Replay everything stored after the cursor, past any terminal state: a requeued job has
    # events after its first end, and the job's current state (below) says whether more may come.
    while True:
        rows = await store.events(job_id, after=cursor, count=REPLAY_PAGE)
        for event_id, kind, data in rows:
            yield format_event(event_id, kind, data)
            cursor = event_id
        if len(rows) < REPLAY_PAGE:
            break
    if await _finished(store, job_id):
        # It may have finished since the replay read: send what came since.
        for event_id, kind, data in await store.events(job_id, after=cursor, count=REPLAY_PAGE):
            yield format_event(event_id, kind, data)
        return
    loop = asyncio.get_running_loop()
    with hub.follow(job_id, cursor) as follower:
        while True:
            left = deadline - loop.time()
            if left <= 0 or follower.cut_off:
                # Lifetime up, or the client fell too far behind: it resumes from its last event.
                yield f": resume with Last-Event-ID\nretry: {random.randint(*RESUME_MS)}\n\n"
                return
            events = await follower.next(min(KEEPALIVE_SECONDS, left))
            for event_id, kind, data in events:
                yield format_event(event_id, kind, data)
                cursor = event_id
                if is_terminal_event(kind, data):
                    return
            if not events and not follower.cut_off and deadline > loop.time():
                yield ": keepalive\n\n"
                try:
                    finished = await _finished(store, job_id)
                except StoreUnavailable:
                    return  # the client resumes once Redis answers again (503 meanwhile)
                if finished:
                    # Ended without a terminal event reaching the stream (it expired, or its
                    # history was compacted): send what the store has past the cursor.
                    for event_id, kind, data in await store.events(job_id, after=cursor, count=REPLAY_PAGE):
                        yield format_event(event_id, kind, data)
                    return


async def _finished(store: JobStore, job_id: str) -> bool:
    job = await store.get(job_id, None)
    return job is None or job.state in TERMINAL_STATES


class LiveEventResponse(StreamingResponse):
    """An SSE response that holds a stream slot (stream_slots) until it ends, however it ends."""

    def __init__(self, content: AsyncIterator[str], slot: StreamSlot) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
            await self.body_iterator.aclose()  # leaves the hub now, not when the collector finds it


# A pipeline's stream ends with its `end` event (succeeded, failed or cancelled), or with a
# `blocked` one (a step failed: the pipeline waits for a retry, which a new stream follows).
PIPELINE_LAST_KINDS = ("end", "blocked")


async def pipeline_event_stream(store: PipelineStore, hub: LiveEventHub, pipeline_id: str, after: str,
                                deadline: float, *, status_base_url: str) -> AsyncIterator[str]:
    """A pipeline's live events: its jobs' moves (`state`: job, step, page, state), `blocked`
    when a step failed, and `end`. A stream from the start opens with the pipeline as it is
    (`pipeline`, id 0-1: what GET /v1/pipelines/{id} gives)."""
    yield f"retry: {RECONNECT_MS}\n\n"
    if after == "0-0":
        view = await store.get(pipeline_id, None)
        if view is None:
            return
        yield format_event("0-1", "pipeline", json.dumps(view.to_api(status_base_url=status_base_url)))
    cursor = after if after != "0-1" else "0-0"
    while True:
        rows = await store.events(pipeline_id, after=cursor, count=REPLAY_PAGE)
        for event_id, kind, data in rows:
            yield format_event(event_id, kind, data)
            cursor = event_id
        if len(rows) < REPLAY_PAGE:
            break
    view = await store.get(pipeline_id, None)
    if view is None or view.state in ("succeeded", "failed", "cancelled"):
        return
    loop = asyncio.get_running_loop()
    with hub.follow_stream(keys.pipeline_events(pipeline_id), cursor) as follower:
        while True:
            left = deadline - loop.time()
            if left <= 0 or follower.cut_off:
                yield f": resume with Last-Event-ID\nretry: {random.randint(*RESUME_MS)}\n\n"
                return
            events = await follower.next(min(KEEPALIVE_SECONDS, left))
            for event_id, kind, data in events:
                yield format_event(event_id, kind, data)
                if kind in PIPELINE_LAST_KINDS:
                    return
            if not events and not follower.cut_off and deadline > loop.time():
                yield ": keepalive\n\n"
