"""A server-sent events decoder fed one line at a time (the WHATWG event-stream rules we need).

It does no I/O, so the sync and async clients share it. Comment lines (keepalives) are
skipped; an `id:` line updates `last_event_id` even for an event without data, as the spec says,
so a resume never replays what was already seen.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseMessage:
    id: str
    event: str
    data: str


class SseDecoder:
    def __init__(self) -> None:
        self.last_event_id = ""
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SseMessage | None:
        """Feed one line without its line ending; returns a message when a blank line ends one."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseMessage | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseMessage(id=self.last_event_id, event=event or "message", data="\n".join(data))
