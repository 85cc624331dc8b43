"""Live events for every stream a status process serves, read by one Redis connection.

Each SSE stream used to hold a pooled connection in its own `XREAD BLOCK`, so a hundred
followers took every connection and the service stopped answering anyone (issue 18). Here one
reader follows every job this process streams with a single `XREAD BLOCK` over all their event
streams, and hands each follower the events past its own cursor. Followers cost memory (a
bounded buffer each), not connections: the process holds the store's pool plus this one.

- A follower joins with the id of the last event it has sent (after its replay from the store,
  `JobStore.events`); the next read includes its stream from the lowest id any of that stream's
  followers needs, so nothing between its replay and its first live event is missed.
- A joining follower does not wait for the read in flight to time out: the hub asks Redis to
  end that wait (`CLIENT UNBLOCK`, sent from the store's pool) and the reader starts the next
  read with the new stream in it. Where `CLIENT UNBLOCK` is not allowed (an ACL), the read's
  own timeout (BLOCK_MS) bounds the wait instead.
- A follower whose client reads slower than its job writes is cut off after FOLLOWER_BUFFER
  waiting events; its client resumes from its last event (`Last-Event-ID`), so nothing is lost
  and memory stays bounded.

The hub only follows: replaying stored events is the store's (`JobStore.events`), and the SSE
stream (`sse.py`) uses both.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from offload_core.jobs import keys
from offload_core.jobs.record import as_text
from offload_core.settings import Settings
from offload_core.web.redis_pool import pooled_client

log = logging.getLogger("offload.status.events")

Event = tuple[str, str, str]  # (stream id, kind, data json), as JobStore.events gives them

BLOCK_MS = 5000            # a read with nothing new returns after this long
EVENTS_PER_READ = 500      # per stream and read; a longer backlog comes in the next read
FOLLOWER_BUFFER = 2000     # events waiting for one follower's client; past it the follower is cut off
UNBLOCK_ATTEMPTS = 50      # ~100 ms of asking Redis to end the read in flight
RETRY_SECONDS = (0.2, 5.0)  # back-off of the reader while Redis is unreachable


def stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class Follower:
    """One live stream's view of the hub: the events past `cursor`, as they come."""

    __slots__ = ("key", "cursor", "cut_off", "_events", "_arrived")

    def __init__(self, key: str, cursor: str) -> None:
        self.key = key
        self.cursor = stream_id(cursor)  # the last event handed to this follower
        self.cut_off = False             # its client fell FOLLOWER_BUFFER events behind
        self._events: deque[Event] = deque()
        self._arrived = asyncio.Event()

    def deliver(self, events: list[tuple[tuple[int, int], Event]]) -> None:
        fresh = [event for sid, event in events if sid > self.cursor]
        if not fresh or self.cut_off:
            return
        if len(self._events) + len(fresh) > FOLLOWER_BUFFER:
            self.cut_off = True
        else:
            self._events.extend(fresh)
            self.cursor = stream_id(fresh[-1][0])
        self._arrived.set()

    async def next(self, timeout: float) -> list[Event]:
        """The events that arrived since the last call, waiting up to `timeout` s for one."""
        if not self._events and not self.cut_off:
            try:
                async with asyncio.timeout(timeout):
                    await self._arrived.wait()
            except TimeoutError:
                return []
        self._arrived.clear()
        events = list(self._events)
        self._events.clear()
        return events


class LiveEventHub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._followers: dict[str, set[Follower]] = {}
        self._wanted = 0          # bumped when a stream joins: the reader's next read must include it
        self._reading = 0         # `_wanted` as it was when the read in flight was sent
        self._joined = asyncio.Event()
        self._reader_id: int | None = None  # the reader connection's CLIENT ID
        self._control: aioredis.Redis | None = None  # the store's client, for CLIENT UNBLOCK
        self._waker: asyncio.Task | None = None
        self._unblock_allowed = True

    @property
    def followers(self) -> int:
        return sum(len(group) for group in self._followers.values())

    @contextmanager
    def follow(self, job_id: str, cursor: str) -> Iterator[Follower]:
        """Follow a job's events past `cursor` for the length of the `with` block."""
        follower = Follower(keys.events(job_id), cursor)
        self._followers.setdefault(follower.key, set()).add(follower)
        self._wanted += 1
        self._joined.set()
        self._wake_reader()
        try:
            yield follower
        finally:
            group = self._followers.get(follower.key)
            if group is not None:
                group.discard(follower)
                if not group:
                    del self._followers[follower.key]

    async def run(self, control: aioredis.Redis) -> None:
        """The reader, until cancelled. `control`: a client of another connection (the store's)."""
        self._control = control
        reader = pooled_client(self.settings, max_connections=1)
        backoff = RETRY_SECONDS[0]
        try:
            while True:
                if not self._followers:
                    self._joined.clear()
                    await self._joined.wait()
                    continue
                try:
                    if self._reader_id is None:
                        self._reader_id = await reader.client_id()
                    reply = await self._read(reader)
                except (RedisError, OSError) as exc:
                    log.warning("live events: Redis read failed (%s); again in %.1f s", exc, backoff)
                    self._reader_id = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_SECONDS[1])
                    continue
                backoff = RETRY_SECONDS[0]
                self._dispatch(reply)
        finally:
            if self._waker is not None:
                self._waker.cancel()
            await reader.aclose()

    async def _read(self, reader: aioredis.Redis):
        # Each stream from the lowest cursor among its followers (each gets only what is past its own).
        streams = {key: "%d-%d" % min(f.cursor for f in group) for key, group in self._followers.items()}
        self._reading = self._wanted
        pipe = reader.pipeline(transaction=False)
        pipe.client_id()  # a connection redis-py had to remake has a new id: keep the one to unblock
        pipe.xread(streams, count=EVENTS_PER_READ, block=BLOCK_MS)
        self._reader_id, reply = await pipe.execute()
        return reply

    def _dispatch(self, reply) -> None:
        for key, rows in (reply.items() if isinstance(reply, dict) else reply or []):
            group = self._followers.get(as_text(key))
            if not group:
                continue  # its last follower left during the read
            events = [(stream_id(as_text(i)), (as_text(i), as_text(f[b"kind"]), as_text(f[b"data"])))
                      for i, f in rows]
            for follower in list(group):
                follower.deliver(events)
                if follower.cut_off:
                    group.discard(follower)  # it no longer holds the stream's cursor back
            if not group:
                self._followers.pop(as_text(key), None)

    def _wake_reader(self) -> None:
        if self._unblock_allowed and (self._waker is None or self._waker.done()):
            self._waker = asyncio.create_task(self._unblock_reader(), name="live-events-wake")

    async def _unblock_reader(self) -> None:
        """End the read in flight (if it does not include the newest follower) so the next one does."""
        for _ in range(UNBLOCK_ATTEMPTS):
            if self._reading >= self._wanted or self._reader_id is None or self._control is None:
                return
            try:
                if await self._control.client_unblock(self._reader_id):
                    return
            except ResponseError as exc:  # not allowed (an ACL): joins wait for BLOCK_MS at most
                log.warning("live events: CLIENT UNBLOCK refused (%s); new streams may wait up to %d ms",
                            exc, BLOCK_MS)
                self._unblock_allowed = False
                return
            except (RedisError, OSError):
                return
            await asyncio.sleep(0.002)  # the reader is between two reads, or its read is on its way
