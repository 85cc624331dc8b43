"""The asyncio client: the same calls as `OffloadClient`, awaited.

    async with AsyncOffloadClient(api_key=KEY) as offload:
        job = await offload.submit_llm(prompt="Say hi", max_tokens=16)
        async for event in offload.events(job.id):
            ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx

from . import _calls, _plans
from ._calls import Call, FileInput, Message
from ._plans import CloseStream, Emit, NextLine, OpenStream, ReadBody, Run, Send, Sleep
from .config import ClientConfig, RetryPolicy
from .models import (
    Batch,
    BatchPage,
    FileObject,
    Job,
    JobEvent,
    JobPage,
    JobState,
    JobType,
    Pipeline,
    PipelineEvent,
    PipelinePage,
    Priority,
    QueueStats,
)

EventCallback = Callable[[JobEvent], Awaitable[None] | None]


class AsyncOffloadClient:
    def __init__(self, gateway_url: str | None = None, *, status_url: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig.resolve(gateway_url, status_url=status_url, api_key=api_key,
                                                     timeout=timeout, retry=retry or RetryPolicy())
        self._http = httpx.AsyncClient(transport=transport)  # requests come whole from _calls.http_request

    async def __aenter__(self) -> "AsyncOffloadClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- gateway -------------------------------------------------------------------------------

    async def submit_ocr(self, file: FileInput, *, filename: str | None = None, languages: str | None = None,
                         priority: Priority | str | None = None, callback_url: str | None = None,
                         idempotency_key: str | None = None, run_at: datetime | str | None = None,
                         delay_seconds: float | None = None) -> Job:
        call = _calls.submit_ocr(file, filename=filename, languages=languages, priority=priority,
                                 callback_url=callback_url, idempotency_key=idempotency_key, run_at=run_at,
                                 delay_seconds=delay_seconds)
        return _calls.as_job(await self._send(call))

    async def submit_llm(self, prompt: str | None = None, *, messages: list[Message] | None = None,
                         model: str | None = None, max_tokens: int | None = None, temperature: float | None = None,
                         priority: Priority | str | None = None, callback_url: str | None = None,
                         idempotency_key: str | None = None, run_at: datetime | str | None = None,
                         delay_seconds: float | None = None, top_p: float | None = None,
                         stop: str | list[str] | None = None, seed: int | None = None,
                         presence_penalty: float | None = None, frequency_penalty: float | None = None,
                         response_format: dict[str, Any] | None = None) -> Job:
        call = _calls.submit_llm(prompt=prompt, messages=messages, model=model, max_tokens=max_tokens,
                                 temperature=temperature, priority=priority, callback_url=callback_url,
                                 idempotency_key=idempotency_key, run_at=run_at, delay_seconds=delay_seconds,
                                 top_p=top_p, stop=stop, seed=seed, presence_penalty=presence_penalty,
                                 frequency_penalty=frequency_penalty, response_format=response_format)
        return _calls.as_job(await self._send(call))

    async def cancel(self, job_id: str) -> Job:
        return _calls.as_job(await self._send(_calls.cancel(job_id)))

    async def retry(self, job_id: str) -> Job:
        return _calls.as_job(await self._send(_calls.retry(job_id)))

    # -- files and batches (OpenAI's Files and Batches APIs, on the gateway) ------------------------

    async def submit_embed(self, input: str | list[str], *, model: str | None = None,  # noqa: A002
                           encoding_format: str | None = None, priority: Priority | str | None = None,
                           callback_url: str | None = None, idempotency_key: str | None = None,
                           run_at: datetime | str | None = None, delay_seconds: float | None = None) -> Job:
        """Submit text embeddings (OpenAI's `input`, `model`, `encoding_format`); the result is
        OpenAI's embeddings object."""
        return _calls.as_job(await self._send(_calls.submit_embed(
            input=input, model=model, encoding_format=encoding_format, priority=priority, callback_url=callback_url,
            idempotency_key=idempotency_key, run_at=run_at, delay_seconds=delay_seconds)))

    async def create_batch(self, file: FileInput, *, endpoint: str, filename: str | None = None,
                           completion_window: str = "24h", metadata: dict[str, str] | None = None,
                           priority: Priority | str | None = None, callback_url: str | None = None) -> Batch:
        """Upload a JSONL file of requests (a path, bytes or a binary file) and create a batch
        reading it. `priority` (default low) and `callback_url` go in the batch's metadata."""
        metadata = dict(metadata or {})
        if priority is not None:
            metadata["priority"] = str(Priority(priority))
        if callback_url is not None:
            metadata["callback_url"] = callback_url
        run = Run(_plans.create_batch(self.config, file, filename=filename, endpoint=endpoint,
                                      completion_window=completion_window, metadata=metadata or None))
        async for _ in self._drive(run):
            pass
        return run.result

    async def get_batch(self, batch_id: str) -> Batch:
        return _calls.as_batch(await self._send(_calls.get_batch(batch_id)))

    async def list_batches(self, *, after: str | None = None, limit: int | None = None) -> BatchPage:
        return _calls.as_batch_page(await self._send(_calls.list_batches(after=after, limit=limit)))

    def iter_batches(self, *, page_size: int = 100) -> AsyncIterator[Batch]:
        """All of this tenant's batches, newest first."""
        return self._drive(Run(_plans.iter_batches(self.config, page_size=page_size)))

    async def cancel_batch(self, batch_id: str) -> Batch:
        """Cancel a batch: `cancelling`, then `cancelled` with the output of the lines done."""
        return _calls.as_batch(await self._send(_calls.cancel_batch(batch_id)))

    async def wait_batch(self, batch_id: str, *, timeout: float | None = None, poll_seconds: float = 1.0,
                         on_change: Callable[[Batch], None] | None = None) -> Batch:
        """Poll the batch until it has ended (completed, failed, expired or cancelled) and return it;
        `on_change` sees it whenever its status or counts change. `WaitTimeout` after `timeout`."""
        run = Run(_plans.wait_batch(self.config, batch_id, timeout, poll_seconds))
        async for batch in self._drive(run):
            if on_change:
                on_change(batch)
        return run.result

    async def get_file(self, file_id: str) -> FileObject:
        return _calls.as_file(await self._send(_calls.get_file(file_id)))

    async def file_content(self, file_id: str) -> bytes:
        """A file's bytes (a batch's output or error file is JSONL, one line per request)."""
        return _calls.as_bytes(await self._send(_calls.file_content(file_id)))

    async def delete_file(self, file_id: str) -> None:
        _calls.checked(await self._send(_calls.delete_file(file_id)))

    # -- status --------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        return _calls.as_job(await self._send(_calls.get_job(job_id)))

    async def result(self, job_id: str) -> dict[str, Any]:
        return _calls.as_result(await self._send(_calls.result(job_id)))

    async def list_jobs(self, *, state: JobState | str | None = None, type: JobType | str | None = None,  # noqa: A002
                        cursor: str | None = None, limit: int | None = None) -> JobPage:
        call = _calls.list_jobs(state=state, type=type, cursor=cursor, limit=limit)
        return _calls.as_page(await self._send(call))

    def iter_jobs(self, *, state: JobState | str | None = None, type: JobType | str | None = None,  # noqa: A002
                  page_size: int = 100) -> AsyncIterator[Job]:
        return self._drive(Run(_plans.iter_jobs(self.config, state=state, type=type, page_size=page_size)))

    async def queues(self) -> QueueStats:
        return _calls.as_queues(await self._send(_calls.queues()))

    async def usage(self, from_: str | None = None, to: str | None = None) -> dict[str, Any]:
        return _calls.as_usage(await self._send(_calls.usage(from_, to)))

    async def dead_letters(self, limit: int | None = None) -> list[Job]:
        return _calls.as_dead_letters(await self._send(_calls.dead_letters(limit)))

    def events(self, job_id: str, *, last_event_id: str | None = None) -> AsyncIterator[JobEvent]:
        """The job's events until its terminal state, resuming a cut connection with Last-Event-ID."""
        return self._drive(Run(_plans.follow(self.config, job_id, last_event_id, deadline=None)))

    async def wait(self, job_id: str, *, timeout: float | None = None, on_event: EventCallback | None = None) -> Job:
        """Follow the job until it is terminal and return the final record (see `OffloadClient.wait`)."""
        run = Run(_plans.wait(self.config, job_id, timeout))
        async for event in self._drive(run):
            if on_event:
                outcome = on_event(event)
                if outcome is not None:
                    await outcome
        return run.result

    # -- pipelines (see OffloadClient) ----------------------------------------------------------

    async def submit_pipeline(self, file: FileInput, steps: list[dict[str, Any]], *, filename: str | None = None,
                              priority: Priority | str | None = None,
                              idempotency_key: str | None = None) -> Pipeline:
        call = _calls.submit_pipeline(file, steps, filename=filename, priority=priority,
                                      idempotency_key=idempotency_key)
        return _calls.as_pipeline(await self._send(call))

    async def get_pipeline(self, pipeline_id: str) -> Pipeline:
        return _calls.as_pipeline(await self._send(_calls.get_pipeline(pipeline_id)))

    async def list_pipelines(self, *, cursor: str | None = None, limit: int | None = None) -> PipelinePage:
        return _calls.as_pipeline_page(await self._send(_calls.list_pipelines(cursor=cursor, limit=limit)))

    async def cancel_pipeline(self, pipeline_id: str) -> Pipeline:
        return _calls.as_pipeline(await self._send(_calls.cancel_pipeline(pipeline_id)))

    async def retry_pipeline(self, pipeline_id: str) -> Pipeline:
        return _calls.as_pipeline(await self._send(_calls.retry_pipeline(pipeline_id)))

    def pipeline_events(self, pipeline_id: str, *, last_event_id: str | None = None) -> AsyncIterator[PipelineEvent]:
        return self._drive(Run(_plans.follow_pipeline(self.config, pipeline_id, last_event_id, deadline=None)))

    async def wait_pipeline(self, pipeline_id: str, *, timeout: float | None = None,
                            on_event: Callable[[PipelineEvent], Awaitable[None] | None] | None = None) -> Pipeline:
        run = Run(_plans.wait_pipeline(self.config, pipeline_id, timeout))
        async for event in self._drive(run):
            if on_event:
                outcome = on_event(event)
                if outcome is not None:
                    await outcome
        return run.result

    # -- plumbing: the I/O of the plans in _plans, which make every decision ------------------

    async def _send(self, call: Call) -> httpx.Response:
        run = Run(_plans.send(self.config, call))
        async for _ in self._drive(run):
            pass  # sending emits nothing; the answer is what the plan returns
        return run.result

    async def _drive(self, run: Run[Any]) -> AsyncIterator[Any]:
        """Carry out the plan's steps; yields what it emits."""
        stream: httpx.Response | None = None
        lines: AsyncIterator[str] | None = None
        try:
            for step in run:
                try:
                    match step:
                        case Send(request):
                            run.reply(await self._http.send(request))
                        case OpenStream(request):
                            stream = await self._http.send(request, stream=True)
                            lines = stream.aiter_lines()
                            run.reply(stream)
                        case ReadBody():
                            await stream.aread()
                        case NextLine():
                            run.reply(await anext(lines, None))
                        case CloseStream():
                            if stream is not None:
                                await stream.aclose()
                        case Sleep(seconds):
                            await asyncio.sleep(seconds)
                        case Emit(item):
                            yield item
                except httpx.TransportError as exc:
                    run.fail(exc)
        finally:
            run.close()
            if stream is not None:
                await stream.aclose()
