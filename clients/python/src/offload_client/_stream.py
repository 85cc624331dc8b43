"""Following a job's events across dropped connections, without I/O.

`EventFollower` decodes the lines of one connection after another and decides what happens
when a connection ends: done (the stream ended right after a terminal state event), resume
from the last event id after the server's `retry:` delay, or give up after too many reconnects
that brought nothing. A terminal state in the middle of a replay is not the end: a requeued
job has events after its first end, and the server sends them all.
"""

from __future__ import annotations

import json

from .errors import TransportError
from .models import JobEvent, StateEvent, event_from_sse
from .sse import SseDecoder

DEFAULT_RECONNECT_SECONDS = 1.0
MAX_RECONNECT_SECONDS = 10.0


class EventFollower:
    def __init__(self, job_id: str, last_event_id: str | None, max_reconnects: int) -> None:
        self.job_id = job_id
        self.last_event_id = last_event_id or ""
        self.at_terminal = False  # the last event seen was a terminal state
        self._max_reconnects = max_reconnects
        self._fruitless = 0      # reconnects in a row that delivered no event
        self._retry_ms: int | None = None
        self._decoder = SseDecoder()
        self._got_event = False

    def request_headers(self) -> dict[str, str]:
        """Headers for the next connection; starts a fresh decoder for it."""
        self._decoder = SseDecoder()
        self._got_event = False
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def feed(self, line: str) -> JobEvent | None:
        message = self._decoder.feed(line)
        if self._decoder.retry_ms is not None:
            self._retry_ms = self._decoder.retry_ms
        if message is None:
            return None
        try:
            data = json.loads(message.data)
        except ValueError:
            data = message.data
        event = event_from_sse(message.id, message.event, data)
        if message.id:
            self.last_event_id = message.id
        self._got_event = True
        self.at_terminal = isinstance(event, StateEvent) and event.state.is_terminal
        return event

    def connection_lost(self, cause: BaseException | str, retry_after: float | None = None) -> float:
        """The connection ended before the job did. Returns seconds to wait before resuming,
        or raises `TransportError` when reconnecting keeps getting nowhere."""
        self._fruitless = 0 if self._got_event else self._fruitless + 1
        if self._fruitless > self._max_reconnects:
            raise TransportError(
                f"lost the event stream of job {self.job_id} {self._fruitless} times in a row "
                f"without news (last: {cause})")
        if retry_after is not None:
            return min(retry_after, MAX_RECONNECT_SECONDS)
        if self._retry_ms is not None:
            return min(self._retry_ms / 1000, MAX_RECONNECT_SECONDS)
        return DEFAULT_RECONNECT_SECONDS
