"""Validate a whole batch input file before anything is queued, as OpenAI's contract asks.

The file is read in windows (never whole into memory), each window's lines checked in a worker
thread (pydantic is CPU work; the event loop keeps serving). Every line is checked as its
single-job route would check it (lines.parse_line), custom ids must be unique, and the file holds
at most OFFLOAD_BATCH_MAX_LINES requests. Reading stops at the first MAX_REPORTED errors: the
answer names each with its line number (1 = the file's first line; blank lines are skipped but
counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from offload_core.batches.lines import LineError, is_blank, parse_line, split_lines
from offload_core.files.record import FileRecord
from offload_core.files.store import FileStore
from offload_core.settings import Settings

WINDOW_BYTES = 1024 * 1024
MAX_REPORTED = 10


@dataclass
class Validation:
    requests: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, what is wrong)

    @property
    def ok(self) -> bool:
        return not self.errors and self.requests > 0


@dataclass
class _State:
    line_no: int = 0
    seen: set[str] = field(default_factory=set)


async def validate_file(files: FileStore, record: FileRecord, endpoint: str, settings: Settings,
                        tenant: str) -> Validation:
    out, state = Validation(), _State()
    max_line = settings.max_json_body_bytes
    position, carry, skipping = 0, b"", False
    while position < record.bytes and len(out.errors) < MAX_REPORTED:
        window = await files.read_range(record, position, WINDOW_BYTES)
        if not window:
            break
        position += len(window)
        data = carry + window
        lines, used = split_lines(data, at_end=position >= record.bytes)
        carry = data[used:]
        if skipping and lines:  # the rest of a line already reported (and counted) as too long
            lines, skipping = lines[1:], False
        if len(carry) > max_line and not skipping:
            # A line longer than any request may be: reported once, its bytes not kept.
            await anyio.to_thread.run_sync(_check, lines, endpoint, settings, tenant, state, out)
            state.line_no += 1
            out.errors.append((state.line_no, f"the line is longer than {max_line} bytes, the most a request may be"))
            carry, skipping = b"", True
            continue
        if skipping:
            carry = b""
            continue
        await anyio.to_thread.run_sync(_check, lines, endpoint, settings, tenant, state, out)
    if not out.errors and out.requests == 0:
        out.errors.append((1, "the file holds no requests: one JSON request per line"))
    return out


def _check(lines: list[bytes], endpoint: str, settings: Settings, tenant: str, state: _State, out: Validation) -> None:
    for raw in lines:
        state.line_no += 1
        if len(out.errors) >= MAX_REPORTED:
            return
        if is_blank(raw):
            continue
        out.requests += 1
        if out.requests > settings.batch_max_lines:
            out.errors.append((state.line_no, f"the file holds more than {settings.batch_max_lines} requests, the "
                                              "most one batch may hold; split it into several batches"))
            return
        try:
            line = parse_line(raw, endpoint, settings, tenant)
        except LineError as exc:
            out.errors.append((state.line_no, str(exc)))
            continue
        if line.custom_id in state.seen:
            out.errors.append((state.line_no, f"custom_id {line.custom_id!r} is used by an earlier line; each "
                                              "line needs its own"))
        state.seen.add(line.custom_id)
