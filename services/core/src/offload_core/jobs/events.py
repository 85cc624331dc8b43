"""A job's event history as the status service replays it (SSE).

Events are stream entries (`offload:job:{id}:events`) with two fields, `kind` (state | progress
| token) and `data` (JSON), and the stream's entry id. Two of a job's events are not kept in the
stream, so that a job costs Redis less (BENCHMARKS.md, "Ceiling"), and are made from its record:
- its first state (`queued`, or `scheduled` for a job submitted with a time), id `0-1`, below
  every real entry id; the submit script writes no event;
- once the job's stream has expired (`events_grace_seconds` after its end), its terminal state
  event, under the id it had in the stream (`final_event` in the record), so a client resuming
  with a Last-Event-ID from before the end still gets it, and one from after it gets nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from offload_core.types import TERMINAL_STATES, EventKind, JobState

Event = tuple[str, str, str]  # (id, kind, data json)

FIRST_EVENT_ID = "0-1"


def stream_id(text: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair (ms, sequence); ValueError when it is not one."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def replay(after: str, rows: Sequence[Event], record: dict[str, str], *, complete: bool) -> list[Event]:
    """The events after `after`: the record's first state, the stream's `rows` (read after
    `after`), and the terminal state from the record when the stream no longer holds it.
    `complete`: `rows` reach the stream's end (they were not cut at a page size)."""
    if not record:
        return list(rows)
    out: list[Event] = []
    cursor = stream_id(after)
    if cursor < stream_id(FIRST_EVENT_ID):
        first = JobState.SCHEDULED if record.get("run_at") else JobState.QUEUED
        out.append((FIRST_EVENT_ID, EventKind.STATE.value,
                    f'{{"state":"{first.value}","at":{record.get("created_at", "0")}}}'))
    out.extend(rows)
    final = record.get("final_event")
    state = record.get("state")
    if complete and final and state in TERMINAL_STATES:
        last = stream_id(rows[-1][0]) if rows else cursor
        if stream_id(final) > last:
            data = f'{{"state":"{state}","at":{record.get("finished_at", "0")},"error":{record.get("error") or "null"}}}'
            out.append((final, EventKind.STATE.value, data))
    return out


def is_terminal_event(kind: str, data: str) -> bool:
    if kind != EventKind.STATE:
        return False
    try:
        return json.loads(data).get("state") in TERMINAL_STATES
    except ValueError:
        return False
