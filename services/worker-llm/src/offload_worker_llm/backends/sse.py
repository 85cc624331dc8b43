"""Server-sent events, just enough of the format to read an OpenAI-style stream."""

from __future__ import annotations

from typing import Iterable, Iterator


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """Yield the data of each event in a text/event-stream, given its lines without line endings.

    Data lines of one event are joined with new lines, as the SSE specification says; comments
    (`:`) and the `event`, `id` and `retry` fields are skipped, since OpenAI-style streams put
    everything into `data`.
    """
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
                data = []
            continue
        field, _, value = line.partition(":")
        if field != "data":
            continue
        data.append(value[1:] if value.startswith(" ") else value)
    if data:
        # The server closed without the blank line that ends an event; what it sent still counts.
        yield "\n".join(data)
