"""The asyncio client: the same calls as `OffloadClient`, awaited.

    async with AsyncOffloadClient(api_key=KEY) as offload:
        job = await offload.submit_llm(prompt="Say hi", max_tokens=16)
        async for event in offload.events(job.id):
            ...
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from . import _calls
from ._calls import Call, FileInput, Message
from ._stream import EventFollower
from .client import RETRYABLE_STATUS
from .config import ClientConfig, RetryPolicy
from .errors import RateLimitedError, ServiceUnavailableError, TransportError, WaitTimeout, error_from_response
from .models import Job, JobEvent, JobPage, JobState, JobType, Priority, QueueStats, StateEvent
from .version import USER_AGENT

EventCallback = Callable[[JobEvent], Awaitable[None] | None]


class AsyncOffloadClient:
    def __init__(self, gateway_url: str | None = None, *, status_url: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig.resolve(gateway_url, status_url=status_url, api_key=api_key,
                                                     timeout=timeout, retry=retry or RetryPolicy())
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {self.config.api_key}", "User-Agent": USER_AGENT},
            timeout=self.config.timeout, transport=transport)

    async def __aenter__(self) -> "AsyncOffloadClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- gateway -------------------------------------------------------------------------------

    async def submit_ocr(self, file: FileInput, *, filename: str | None = None, languages: str | None = None,
                         priority: Priority | str | None = None, callback_url: str | None = None,
                         idempotency_key: str | None = None) -> Job:
        call = _calls.submit_ocr(file, filename=filename, languages=languages, priority=priority,
                                 callback_url=callback_url, idempotency_key=idempotency_key)
        return _calls.as_job(await self._send(call))

    async def submit_llm(self, prompt: str | None = None, *, messages: list[Message] | None = None,
                         model: str | None = None, max_tokens: int | None = None, temperature: float | None = None,
                         priority: Priority | str | None = None, callback_url: str | None = None,
                         idempotency_key: str | None = None) -> Job:
        call = _calls.submit_llm(prompt=prompt, messages=messages, model=model, max_tokens=max_tokens,
                                 temperature=temperature, priority=priority, callback_url=callback_url,
                                 idempotency_key=idempotency_key)
        return _calls.as_job(await self._send(call))

    async def cancel(self, job_id: str) -> Job:
        return _calls.as_job(await self._send(_calls.cancel(job_id)))

    async def retry(self, job_id: str) -> Job:
        return _calls.as_job(await self._send(_calls.retry(job_id)))

    # -- status --------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        return _calls.as_job(await self._send(_calls.get_job(job_id)))

    async def result(self, job_id: str) -> dict[str, Any]:
        return _calls.as_result(await self._send(_calls.result(job_id)))

    async def list_jobs(self, *, state: JobState | str | None = None, type: JobType | str | None = None,  # noqa: A002
                        cursor: str | None = None, limit: int | None = None) -> JobPage:
        call = _calls.list_jobs(state=state, type=type, cursor=cursor, limit=limit)
        return _calls.as_page(await self._send(call))

    async def iter_jobs(self, *, state: JobState | str | None = None, type: JobType | str | None = None,  # noqa: A002
                        page_size: int = 100) -> AsyncIterator[Job]:
        cursor = None
        while True:
            page = await self.list_jobs(state=state, type=type, cursor=cursor, limit=page_size)
            for job in page.jobs:
                yield job
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def queues(self) -> QueueStats:
        return _calls.as_queues(await self._send(_calls.queues()))

    async def dead_letters(self, limit: int | None = None) -> list[Job]:
        return _calls.as_dead_letters(await self._send(_calls.dead_letters(limit)))

    def events(self, job_id: str, *, last_event_id: str | None = None) -> AsyncIterator[JobEvent]:
        """The job's events until its terminal state, resuming a cut connection with Last-Event-ID."""
        return self._follow(job_id, last_event_id, deadline=None)

    async def wait(self, job_id: str, *, timeout: float | None = None, on_event: EventCallback | None = None) -> Job:
        """Follow the job until it is terminal and return the final record (see `OffloadClient.wait`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: str | None = None
        async for event in self._follow(job_id, None, deadline=deadline):
            if isinstance(event, StateEvent):
                last = event.state.value
            if on_event:
                outcome = on_event(event)
                if outcome is not None:
                    await outcome
        job = await self.get_job(job_id)
        if not job.is_terminal:
            raise WaitTimeout(job_id, timeout or 0.0, last or job.state.value)
        return job

    # -- plumbing ------------------------------------------------------------------------------

    def _url(self, call: Call) -> str:
        base = self.config.gateway_url if call.service == "gateway" else self.config.status_url
        return base + call.path

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, self._url(call), params=call.params,
                                                    json=call.json, files=call.files, data=call.data,
                                                    headers=call.headers)
            except httpx.ConnectError as exc:
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
            await asyncio.sleep(delay)
            attempt += 1

    async def _follow(self, job_id: str, last_event_id: str | None,
                      deadline: float | None) -> AsyncIterator[JobEvent]:
        follower = EventFollower(job_id, last_event_id, self.config.max_stream_reconnects)
        url = self.config.status_url + _calls.events_path(job_id)
        while True:
            idle = self.config.stream_idle_timeout
            if deadline is not None:
                idle = min(idle, max(0.01, deadline - time.monotonic()))
            timeout = httpx.Timeout(self.config.timeout, read=idle)
            retry_after: float | None = None
            try:
                async with self._http.stream("GET", url, headers=follower.request_headers(), timeout=timeout) as r:
                    if r.status_code in RETRYABLE_STATUS:
                        await r.aread()
                        error = error_from_response(r)
                        cause: BaseException | str = error
                        retry_after = error.retry_after
                    elif r.status_code >= 400:
                        await r.aread()
                        raise error_from_response(r)
                    else:
                        async for line in r.aiter_lines():
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
            if cause == "the stream ended" and (await self.get_job(job_id)).is_terminal:
                return
            try:
                delay = follower.connection_lost(cause, retry_after)
            except TransportError:
                if isinstance(cause, (RateLimitedError, ServiceUnavailableError)):
                    raise cause from None
                raise
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(delay)
