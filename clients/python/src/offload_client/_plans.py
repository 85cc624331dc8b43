"""How a call is retried and how a job is followed: every decision the clients make, and no I/O.

A plan is a generator. It yields the I/O it needs, one step at a time, and is sent each step's
outcome; an `httpx.TransportError` a step raised is thrown into the plan where it yielded that
step. `OffloadClient` and `AsyncOffloadClient` each carry the steps out in one short loop
(`_drive`), so the two clients cannot decide anything differently.

    step                  what the driver does                            outcome sent back
    Send(request)         sends it and reads the whole answer             the httpx.Response
    OpenStream(request)   sends it and keeps the answer open (the stream) the httpx.Response
    ReadBody()            reads the stream's body (an error answer)       -
    NextLine()            reads the stream's next line                    the line; None at the end
    CloseStream()         closes the stream                               -
    Sleep(seconds)        sleeps                                          -
    Emit(item)            hands an event (or a listed job) to the caller  -

The driver also closes a stream still open when the plan ends, fails, or is abandoned.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import httpx

from . import _calls
from ._calls import Call
from .config import ClientConfig
from .errors import ApiError, TransportError, WaitTimeout, error_from_response
from .models import Batch, Job, JobState, JobType, Pipeline, PipelineEvent, StateEvent, event_from_sse
from .sse import SseDecoder

T = TypeVar("T")

# Answers worth asking again for: refused for now (429) or unavailable for now (503).
RETRYABLE_STATUS = frozenset({429, 503})
DEFAULT_RECONNECT_SECONDS = 1.0  # before opening a lost stream again, until the server says (`retry:`)
MAX_RECONNECT_SECONDS = 10.0     # the most a server's `retry:` may make us wait
STREAM_ENDED = "the stream ended"


@dataclass(frozen=True, slots=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True, slots=True)
class OpenStream:
    request: httpx.Request


@dataclass(frozen=True, slots=True)
class ReadBody:
    pass


@dataclass(frozen=True, slots=True)
class NextLine:
    pass


@dataclass(frozen=True, slots=True)
class CloseStream:
    pass


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Emit:
    item: Any


Step: TypeAlias = Send | OpenStream | ReadBody | NextLine | CloseStream | Sleep | Emit
Plan: TypeAlias = Generator[Step, Any, T]


class Run(Generic[T]):
    """A plan as its driver sees it: `for step in run:` hands out the steps; the driver answers
    a step with `run.reply(outcome)` or `run.fail(error)` (or not at all when it has no outcome);
    `run.result` is what the plan returned."""

    result: T

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan
        self._outcome: Any = None
        self._error: BaseException | None = None

    def __iter__(self) -> Run[T]:
        return self

    def __next__(self) -> Step:
        outcome, error = self._outcome, self._error
        self._outcome = self._error = None
        try:
            return self._plan.throw(error) if error is not None else self._plan.send(outcome)
        except StopIteration as done:
            self.result = done.value
            raise StopIteration from None

    def reply(self, outcome: Any) -> None:
        self._outcome = outcome

    def fail(self, error: BaseException) -> None:
        self._error = error

    def close(self) -> None:
        self._plan.close()


# -- plans ------------------------------------------------------------------------------------


def send(config: ClientConfig, call: Call) -> Plan[httpx.Response]:
    """Send `call`; retry a connection that could not be opened and a 429 or 503 answer, as
    `config.retry` allows (after the server's `Retry-After` when it sent one)."""
    attempt = 0
    while True:
        try:
            response = yield Send(_calls.http_request(config, call))
        except httpx.ConnectError as exc:
            # Nothing reached the service, so trying again cannot do anything twice.
            delay = config.retry.delay(attempt, None)
            if delay is None:
                raise TransportError(f"cannot reach {_calls.url(config, call)}: {exc}") from exc
        except httpx.TransportError as exc:
            raise TransportError(f"{call.method} {_calls.url(config, call)} failed: {exc}") from exc
        else:
            if response.status_code not in RETRYABLE_STATUS:
                return response
            error = error_from_response(response)
            delay = config.retry.delay(attempt, error.retry_after)
            if delay is None:
                raise error
        yield Sleep(delay)
        attempt += 1


def follow(config: ClientConfig, job_id: str, last_event_id: str | None,
           deadline: float | None) -> Plan[str | None]:
    """Emit the job's events from the start (or after `last_event_id`) until its terminal state,
    or until `deadline` (a `time.monotonic()` time) passes. Returns the last state it saw.

    A terminal state in the middle of a replay is not the end: a requeued job has events after
    its first end, and the server sends them all. How the stream is resumed: `_follow`.
    """
    def over() -> Plan[bool]:
        return _calls.as_job((yield from send(config, _calls.get_job(job_id)))).is_terminal

    stream = _Stream(f"job {job_id}", lambda after: _calls.events(job_id, after), event_from_sse,
                     state_of=lambda e: e.state.value if isinstance(e, StateEvent) else None,
                     is_last=lambda e: isinstance(e, StateEvent) and e.state.is_terminal, is_over=over)
    return (yield from _follow(config, stream, last_event_id, deadline))


def follow_pipeline(config: ClientConfig, pipeline_id: str, last_event_id: str | None,
                    deadline: float | None) -> Plan[str | None]:
    """Emit the pipeline's events (`pipeline`, each job's `state`, `blocked`, `end`) from the
    start (or after `last_event_id`) until it has ended or failed, or `deadline` passes.
    Returns the last pipeline state it saw. The replay of a retried pipeline goes on past its
    first `end`."""
    def over() -> Plan[bool]:
        return _calls.as_pipeline((yield from send(config, _calls.get_pipeline(pipeline_id)))).is_terminal

    stream = _Stream(f"pipeline {pipeline_id}", lambda after: _calls.pipeline_events(pipeline_id, after),
                     PipelineEvent.from_sse, state_of=PipelineEvent.pipeline_state,
                     is_last=lambda e: e.ends_stream, is_over=over)
    return (yield from _follow(config, stream, last_event_id, deadline))


@dataclass(frozen=True)
class _Stream:
    """What `_follow` needs to know about one kind of event stream."""

    name: str                                   # for messages: "job <id>"
    call: Callable[[str], Call]                 # the events request, after an event id ("" from the start)
    decode: Callable[[str, str, Any], Any]      # (id, kind, data) -> the event
    state_of: Callable[[Any], str | None]       # the state an event tells, if it tells one
    is_last: Callable[[Any], bool]              # the server ends the stream after this event
    is_over: Callable[[], Plan[bool]]           # asks the service whether the thing has ended


def _follow(config: ClientConfig, stream: _Stream, last_event_id: str | None,
            deadline: float | None) -> Plan[str | None]:
    """Emit a stream's events until its last one, or until `deadline` passes.

    A stream that was cut, or that the server ended (it may cap a stream's lifetime), is opened
    again with `Last-Event-ID`, so no event is lost or repeated: after the server's `retry:`
    delay, or after its `Retry-After` when it refused (429) or was unavailable (503); a
    `Retry-After` longer than `config.retry.max_delay` is raised at once. After more than
    `config.max_stream_reconnects` failed connections in a row that brought no event, it gives up
    (a stream the server ended in good order is not a failure).
    """
    last_id = last_event_id or ""
    last_state: str | None = None
    retry_ms: int | None = None  # the server's `retry:` advice, kept across connections
    fruitless = 0                # connections in a row that brought no event
    while True:
        idle = config.stream_idle_timeout  # no byte for this long (keepalives included): lost
        if deadline is not None:
            idle = min(idle, max(0.01, deadline - time.monotonic()))
        request = _calls.http_request(config, stream.call(last_id), read_timeout=idle)
        got_event = at_terminal = False
        retry_after: float | None = None
        try:
            response = yield OpenStream(request)
            if response.status_code >= 400:
                yield ReadBody()
                error = error_from_response(response)
                if response.status_code not in RETRYABLE_STATUS:
                    raise error
                cause: BaseException | str = error
                retry_after = error.retry_after
            else:
                decoder = SseDecoder()  # one per connection
                while (line := (yield NextLine())) is not None:
                    message = decoder.feed(line)
                    if decoder.retry_ms is not None:
                        retry_ms = decoder.retry_ms
                    if message is None:
                        continue
                    event = stream.decode(message.id, message.event, _json_or_text(message.data))
                    last_id = message.id or last_id
                    got_event = True
                    at_terminal = stream.is_last(event)
                    last_state = stream.state_of(event) or last_state
                    yield Emit(event)
                if at_terminal:
                    return last_state  # the server ends the stream after the job's final state
                cause = STREAM_ENDED
        except httpx.TransportError as exc:
            cause = exc
        yield CloseStream()
        if deadline is not None and time.monotonic() >= deadline:
            return last_state
        if cause == STREAM_ENDED and not got_event:
            # Nothing after our cursor: the end, if it is over. (A stream that brought events
            # is resumed even then: the server may have ended it before the last ones.)
            if (yield from stream.is_over()):
                return last_state
        # A stream the server ended in good order (its lifetime cap, say) is news too: the service
        # answers, the job just has nothing new. Only failures count towards giving up.
        fruitless = 0 if got_event or cause == STREAM_ENDED else fruitless + 1
        if fruitless > config.max_stream_reconnects:
            if isinstance(cause, ApiError):
                raise cause  # still refused (429) or unavailable (503): the server's own words
            raise TransportError(f"lost the event stream of {stream.name} {fruitless} times in a row "
                                 f"without news (last: {cause})")
        if retry_after is not None:
            if retry_after > config.retry.max_delay:
                raise cause  # longer than this client waits: the caller decides (RetryPolicy)
            delay = retry_after
        elif retry_ms is not None:
            delay = min(retry_ms / 1000, MAX_RECONNECT_SECONDS)
        else:
            delay = DEFAULT_RECONNECT_SECONDS
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - time.monotonic()))
        yield Sleep(delay)


def wait(config: ClientConfig, job_id: str, timeout: float | None) -> Plan[Job]:
    """Emit the job's events until it is terminal, then return its final record; raise
    `WaitTimeout` if it is not terminal within `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last_state = yield from follow(config, job_id, None, deadline)
    job = _calls.as_job((yield from send(config, _calls.get_job(job_id))))
    if not job.is_terminal:  # the deadline passed
        raise WaitTimeout(job_id, timeout or 0.0, last_state or job.state.value)
    return job


def wait_pipeline(config: ClientConfig, pipeline_id: str, timeout: float | None) -> Plan[Pipeline]:
    """Emit the pipeline's events until it ends, then return it with its result; raise
    `WaitTimeout` if it has not ended within `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last_state = yield from follow_pipeline(config, pipeline_id, None, deadline)
    pipeline = _calls.as_pipeline((yield from send(config, _calls.get_pipeline(pipeline_id))))
    if not pipeline.is_terminal:  # the deadline passed
        raise WaitTimeout(pipeline_id, timeout or 0.0, last_state or pipeline.state, what="pipeline")
    return pipeline


def iter_jobs(config: ClientConfig, *, state: JobState | str | None, type: JobType | str | None,  # noqa: A002
              page_size: int) -> Plan[None]:
    """Emit all of the tenant's jobs, newest first, fetching pages as needed."""
    cursor = None
    while True:
        call = _calls.list_jobs(state=state, type=type, cursor=cursor, limit=page_size)
        page = _calls.as_page((yield from send(config, call)))
        for job in page.jobs:
            yield Emit(job)
        if not page.next_cursor:
            return
        cursor = page.next_cursor


def create_batch(config: ClientConfig, file: _calls.FileInput, *, filename: str | None, endpoint: str,
                 completion_window: str, metadata: dict[str, str] | None) -> Plan[Batch]:
    """Upload a JSONL file (purpose=batch), then create a batch reading it. A batch refused
    deletes the upload (the caller never saw its id, and it would hold the tenant's file quota)."""
    if endpoint not in _calls.BATCH_ENDPOINTS:  # checked before anything is uploaded
        raise ValueError(f"endpoint must be one of {', '.join(_calls.BATCH_ENDPOINTS)}")
    uploaded = _calls.as_file((yield from send(config, _calls.upload_file(file, filename=filename))))
    create = _calls.create_batch(uploaded.id, endpoint=endpoint, completion_window=completion_window,
                                 metadata=metadata)
    try:
        return _calls.as_batch((yield from send(config, create)))
    except ApiError as exc:
        if 400 <= exc.status < 500:
            yield from send(config, _calls.delete_file(uploaded.id))  # best effort: files expire anyway
        raise


def wait_batch(config: ClientConfig, batch_id: str, timeout: float | None, poll_seconds: float) -> Plan[Batch]:
    """Poll the batch until it has ended, emitting it each time its status or counts change;
    return it ended, or raise `WaitTimeout`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: tuple[Any, ...] | None = None
    while True:
        batch = _calls.as_batch((yield from send(config, _calls.get_batch(batch_id))))
        now = (batch.status, batch.request_counts)
        if now != seen:
            seen = now
            yield Emit(batch)
        if batch.is_ended:
            return batch
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(batch_id, timeout or 0.0, batch.status)
        yield Sleep(poll_seconds if deadline is None else min(poll_seconds, max(0.0, deadline - time.monotonic())))


def iter_batches(config: ClientConfig, *, page_size: int) -> Plan[None]:
    """Emit all of the tenant's batches, newest first, fetching pages as needed."""
    after = None
    while True:
        page = _calls.as_batch_page((yield from send(config, _calls.list_batches(after=after, limit=page_size))))
        for batch in page.data:
            yield Emit(batch)
        if not page.has_more or not page.data:
            return
        after = page.data[-1].id


def _json_or_text(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data
