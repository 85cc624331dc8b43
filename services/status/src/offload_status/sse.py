"""Server-sent events for one job: replay its stored events, then follow new ones live.

Each event carries its Redis stream id as the SSE `id`, so a client that reconnects with
`Last-Event-ID` continues exactly where it left off. The stream ends after the job's terminal
state event.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

from starlette.requests import Request

from offload_core.jobs.store import JobStore
from offload_core.types import TERMINAL_STATES, EventKind

EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
FOLLOW_BLOCK_MS = 2000   # below the Redis client's socket timeout
KEEPALIVE_EVERY = 7      # blocks without news (~15 s) before a comment line keeps proxies open


def is_terminal_event(kind: str, data: str) -> bool:
    if kind != EventKind.STATE:
        return False
    try:
        return json.loads(data).get("state") in TERMINAL_STATES
    except ValueError:
        return False


def format_event(event_id: str, kind: str, data: str) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n"


async def job_event_stream(request: Request, store: JobStore, job_id: str, after: str) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    cursor = after
    # Replay everything stored after the cursor, past any terminal state: a requeued job has
    # events after its first end, and the job's current state (below) says whether more may come.
    while True:
        rows = await store.events(job_id, after=cursor)
        for event_id, kind, data in rows:
            yield format_event(event_id, kind, data)
            cursor = event_id
        if len(rows) < 500:
            break
    job = await store.get(job_id, None)
    if job is None or job.state in TERMINAL_STATES:
        # Finished (or expired); it may have finished since the replay read: send what came since.
        for event_id, kind, data in await store.events(job_id, after=cursor):
            yield format_event(event_id, kind, data)
        return
    # Follow live.
    idle = 0
    while not await request.is_disconnected():
        rows = await store.follow_events(job_id, cursor, FOLLOW_BLOCK_MS)
        if not rows:
            idle += 1
            if idle >= KEEPALIVE_EVERY:
                idle = 0
                yield ": keepalive\n\n"
                job = await store.get(job_id, None)
                if job is None or job.state in TERMINAL_STATES:
                    return
            continue
        idle = 0
        for event_id, kind, data in rows:
            yield format_event(event_id, kind, data)
            cursor = event_id
            if is_terminal_event(kind, data):
                return
