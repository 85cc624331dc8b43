"""The synchronous client: every gateway and status endpoint, events with resume, and wait().

    with OffloadClient("http://localhost:8000", status_url="http://localhost:8001", api_key=KEY) as offload:
        job = offload.submit_llm(prompt="Say hi", max_tokens=16)
        for event in offload.events(job.id):
            ...
        done = offload.wait(job.id, timeout=60)
        print(offload.result(done.id)["text"])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from . import _calls
from ._calls import Call, FileInput, Message
from ._stream import EventFollower
from .config import ClientConfig, RetryPolicy
from .errors import RateLimitedError, ServiceUnavailableError, TransportError, WaitTimeout, error_from_response
from .models import Job, JobEvent, JobPage, JobState, JobType, Priority, QueueStats, StateEvent
from .version import USER_AGENT

RETRYABLE_STATUS = frozenset({429, 503})


class OffloadClient:
    def __init__(self, gateway_url: str | None = None, *, status_url: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig.resolve(gateway_url, status_url=status_url, api_key=api_key,
                                                     timeout=timeout, retry=retry or RetryPolicy())
        self._http = httpx.Client(
            headers={"Authorization": f"Bearer {self.config.api_key}", "User-Agent": USER_AGENT},
            timeout=self.config.timeout, transport=transport)

    def __enter__(self) -> "OffloadClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- gateway -------------------------------------------------------------------------------

    def submit_ocr(self, file: FileInput, *, filename: str | None = None, languages: str | None = None,
                   priority: Priority | str | None = None, callback_url: str | None = None,
                   idempotency_key: str | None = None) -> Job:
        """Submit a document (PNG, JPEG, TIFF or PDF: a path, bytes or an open binary file)."""
        return _calls.as_job(self._send(_calls.submit_ocr(
            file, filename=filename, languages=languages, priority=priority, callback_url=callback_url,
            idempotency_key=idempotency_key)))

    def submit_llm(self, prompt: str | None = None, *, messages: list[Message] | None = None,
                   model: str | None = None, max_tokens: int | None = None, temperature: float | None = None,
                   priority: Priority | str | None = None, callback_url: str | None = None,
                   idempotency_key: str | None = None) -> Job:
        """Submit a chat completion: a `prompt`, or `messages` as [{"role", "content"}]."""
        return _calls.as_job(self._send(_calls.submit_llm(
            prompt=prompt, messages=messages, model=model, max_tokens=max_tokens, temperature=temperature,
            priority=priority, callback_url=callback_url, idempotency_key=idempotency_key)))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: at once when queued or retrying, at its next checkpoint when running."""
        return _calls.as_job(self._send(_calls.cancel(job_id)))

    def retry(self, job_id: str) -> Job:
        """Requeue a failed or dead job (admin keys may requeue any tenant's dead job)."""
        return _calls.as_job(self._send(_calls.retry(job_id)))

    # -- status --------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job:
        return _calls.as_job(self._send(_calls.get_job(job_id)))

    def result(self, job_id: str) -> dict[str, Any]:
        """The result of a succeeded job (`ConflictError` while it has none)."""
        return _calls.as_result(self._send(_calls.result(job_id)))

    def list_jobs(self, *, state: JobState | str | None = None, type: JobType | str | None = None,  # noqa: A002
                  cursor: str | None = None, limit: int | None = None) -> JobPage:
        return _calls.as_page(self._send(_calls.list_jobs(state=state, type=type, cursor=cursor, limit=limit)))

    def iter_jobs(self, *, state: JobState | str | None = None, type: JobType | str | None = None,  # noqa: A002
                  page_size: int = 100) -> Iterator[Job]:
        """All of this tenant's jobs, newest first, fetching pages as needed."""
        cursor = None
        while True:
            page = self.list_jobs(state=state, type=type, cursor=cursor, limit=page_size)
            yield from page.jobs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def queues(self) -> QueueStats:
        return _calls.as_queues(self._send(_calls.queues()))

    def dead_letters(self, limit: int | None = None) -> list[Job]:
        return _calls.as_dead_letters(self._send(_calls.dead_letters(limit)))

    def events(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's events from the start (or after `last_event_id`) until its terminal state.

        A cut connection is resumed with `Last-Event-ID`, so no event is lost or repeated.
        """
        return self._follow(job_id, last_event_id, deadline=None)

    def wait(self, job_id: str, *, timeout: float | None = None,
             on_event: Callable[[JobEvent], None] | None = None) -> Job:
        """Follow the job's events until it is terminal and return the final job record.

        Whatever the outcome (succeeded, failed, dead, cancelled) the job is returned; look at
        `job.state`. Raises `WaitTimeout` if it is not terminal within `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: str | None = None
        for event in self._follow(job_id, None, deadline=deadline):
            if isinstance(event, StateEvent):
                last = event.state.value
            if on_event:
                on_event(event)
        job = self.get_job(job_id)
        if not job.is_terminal:  # the deadline passed
            raise WaitTimeout(job_id, timeout or 0.0, last or job.state.value)
        return job

    # -- plumbing ------------------------------------------------------------------------------

    def _url(self, call: Call) -> str:
        base = self.config.gateway_url if call.service == "gateway" else self.config.status_url
        return base + call.path

    def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, self._url(call), params=call.params, json=call.json,
                                              files=call.files, data=call.data, headers=call.headers)
            except httpx.ConnectError as exc:
                # Nothing reached the service, so trying again cannot do anything twice.
                delay = self.config.retry.delay(attempt, None)
                if delay is None:
                    raise TransportError(f"cannot reach {self._url(call)}: {exc}") from exc
            except httpx.TransportError as exc:
                raise TransportError(f"{call.method} {self._url(call)} failed: {exc}") from exc
            else:
                if response.status_code not in RETRYABLE_STATUS:
                    return response
                error = error_from_response(response)
                delay = self.config.retry.delay(attempt, error.retry_after)
                if delay is None:
                    raise error
            time.sleep(delay)
            attempt += 1

    def _follow(self, job_id: str, last_event_id: str | None, deadline: float | None) -> Iterator[JobEvent]:
        follower = EventFollower(job_id, last_event_id, self.config.max_stream_reconnects)
        url = self.config.status_url + _calls.events_path(job_id)
        while True:
            idle = self.config.stream_idle_timeout
            if deadline is not None:
                idle = min(idle, max(0.01, deadline - time.monotonic()))
            timeout = httpx.Timeout(self.config.timeout, read=idle)
            retry_after: float | None = None
            try:
                with self._http.stream("GET", url, headers=follower.request_headers(), timeout=timeout) as r:
                    if r.status_code in RETRYABLE_STATUS:
                        r.read()
                        error = error_from_response(r)
                        cause: BaseException | str = error
                        retry_after = error.retry_after
                    elif r.status_code >= 400:
                        r.read()
                        raise error_from_response(r)
                    else:
                        for line in r.iter_lines():
                            event = follower.feed(line)
                            if event is not None:
                                yield event
                        if follower.at_terminal:
                            return  # the server ends the stream after the job's final state
                        cause = "the stream ended"
            except httpx.TransportError as exc:
                cause = exc
            if deadline is not None and time.monotonic() >= deadline:
                return
            if cause == "the stream ended" and self.get_job(job_id).is_terminal:
                return  # it finished before our cursor: nothing more will come
            try:
                delay = follower.connection_lost(cause, retry_after)
            except TransportError:
                if isinstance(cause, (RateLimitedError, ServiceUnavailableError)):
                    raise cause from None
                raise
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(delay)
