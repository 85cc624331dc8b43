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
- The read names every followed stream (a thousand, on a busy process) and is sent again
  whenever events arrive; so the command is kept encoded (`ReadCommand`), each stream's part
  re-encoded only when its cursor moves, and sent as bytes on a connection of its own.

The hub only follows: replaying stored events is the store's (`JobStore.events`), and the SSE
stream (`sse.py`) uses both.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from offload_core.jobs import keys
from offload_core.jobs.record import as_text
from offload_core.settings import Settings
from offload_core.web.redis_pool import dedicated_connection

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


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class ReadCommand:
    """`CLIENT ID` then `XREAD COUNT n BLOCK ms STREAMS <keys> <ids>`, as the bytes Redis reads.

    CLIENT ID goes with every read: a reconnected connection has a new id, and the id is what
    `CLIENT UNBLOCK` needs."""

    PREFIX = b"*2\r\n" + _bulk(b"CLIENT") + _bulk(b"ID")
    HEAD = b"".join(_bulk(part) for part in (b"XREAD", b"COUNT", str(EVENTS_PER_READ).encode(), b"BLOCK",
                                               str(BLOCK_MS).encode(), b"STREAMS"))

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._ids: dict[str, bytes] = {}
        self.with_client_id = True  # off where an ACL refuses CLIENT: then nothing unblocks a read

    def set(self, key: str, cursor: tuple[int, int]) -> None:
        if key not in self._keys:
            self._keys[key] = _bulk(key.encode())
        self._ids[key] = _bulk(b"%d-%d" % cursor)

    def remove(self, key: str) -> None:
        self._keys.pop(key, None)
        self._ids.pop(key, None)

    def packed(self) -> bytes:
        # Both dicts hold the same keys in the same (insertion) order.
        return b"".join((self.PREFIX if self.with_client_id else b"", b"*%d\r\n" % (6 + 2 * len(self._keys)),
                         self.HEAD, *self._keys.values(), *self._ids.values()))


def _stream_replies(reply) -> Iterable[tuple[bytes, list]]:
    """XREAD's reply as (key, entries): a map in RESP3, a list of pairs in RESP2, None when empty."""
    if not reply:
        return ()
    return reply.items() if isinstance(reply, dict) else ((key, entries) for key, entries in reply)


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
        self._command = ReadCommand()
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

    def follow(self, job_id: str, cursor: str) -> AbstractContextManager[Follower]:
        """Follow a job's events past `cursor` for the length of the `with` block."""
        return self.follow_stream(keys.events(job_id), cursor)

    @contextmanager
    def follow_stream(self, key: str, cursor: str) -> Iterator[Follower]:
        """Follow the events of the stream at `key` (a job's, a pipeline's) past `cursor`."""
        follower = Follower(key, cursor)
        self._followers.setdefault(follower.key, set()).add(follower)
        self._cursor_moved(follower.key)
        self._wanted += 1
        self._joined.set()
        self._wake_reader()
        try:
            yield follower
        finally:
            self._leave(follower)

    def _leave(self, follower: Follower) -> None:
        group = self._followers.get(follower.key)
        if group is None or follower not in group:
            return
        group.discard(follower)
        self._cursor_moved(follower.key)

    def _cursor_moved(self, key: str) -> None:
        """The lowest cursor among the stream's followers is what the next read asks from."""
        group = self._followers.get(key)
        if group:
            self._command.set(key, min(f.cursor for f in group))
        else:
            self._followers.pop(key, None)
            self._command.remove(key)

    async def run(self, control: aioredis.Redis) -> None:
        """The reader, until cancelled. `control`: a client of another connection (the store's)."""
        self._control = control
        connection = dedicated_connection(self.settings)
        backoff = RETRY_SECONDS[0]
        try:
            while True:
                if not self._followers:
                    self._joined.clear()
                    await self._joined.wait()
                    continue
                try:
                    reply = await self._read(connection)
                except (RedisError, OSError) as exc:
                    log.warning("live events: Redis read failed (%s); again in %.1f s", exc, backoff)
                    self._reader_id = None
                    await connection.disconnect()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_SECONDS[1])
                    continue
                backoff = RETRY_SECONDS[0]
                self._dispatch(reply)
        finally:
            if self._waker is not None:
                self._waker.cancel()
            await connection.disconnect()

    async def _read(self, connection):
        self._reading = self._wanted
        await connection.send_packed_command(self._command.packed())
        if self._command.with_client_id:
            try:
                self._reader_id = int(await connection.read_response())
            except ResponseError as exc:  # the XREAD's reply still follows on the connection
                self._refuse_unblock(exc)
        return await connection.read_response()

    def _refuse_unblock(self, exc: Exception) -> None:
        log.warning("live events: CLIENT refused (%s); a new stream may wait up to %d ms for its first live event",
                    exc, BLOCK_MS)
        self._command.with_client_id = False
        self._unblock_allowed = False
        self._reader_id = None

    def _dispatch(self, reply) -> None:
        for raw_key, rows in _stream_replies(reply):
            key = as_text(raw_key)
            group = self._followers.get(key)
            if not group:
                continue  # its last follower left during the read
            events = []
            for raw_id, fields in rows:
                event_id = as_text(raw_id)
                values = dict(zip(fields[::2], fields[1::2]))
                events.append((stream_id(event_id), (event_id, as_text(values[b"kind"]), as_text(values[b"data"]))))
            for follower in list(group):
                follower.deliver(events)
                if follower.cut_off:
                    group.discard(follower)  # it no longer holds the stream's cursor back
            self._cursor_moved(key)

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
                self._refuse_unblock(exc)
                return
            except (RedisError, OSError):
                return
            await asyncio.sleep(0.002)  # the reader is between two reads, or its read is on its way
