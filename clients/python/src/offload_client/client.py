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


class OffloadClient:
    def __init__(self, gateway_url: str | None = None, *, status_url: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig.resolve(gateway_url, status_url=status_url, api_key=api_key,
                                                     timeout=timeout, retry=retry or RetryPolicy())
        self._http = httpx.Client(transport=transport)  # requests come whole from _calls.http_request

    def __enter__(self) -> "OffloadClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- gateway -------------------------------------------------------------------------------

    def submit_ocr(self, file: FileInput, *, filename: str | None = None, languages: str | None = None,
                   priority: Priority | str | None = None, callback_url: str | None = None,
                   idempotency_key: str | None = None, run_at: datetime | str | None = None,
                   delay_seconds: float | None = None) -> Job:
        """Submit a document (PNG, JPEG, TIFF or PDF: a path, bytes or an open binary file).
        `run_at` (a datetime with a timezone) or `delay_seconds` schedule it for later."""
        return _calls.as_job(self._send(_calls.submit_ocr(
            file, filename=filename, languages=languages, priority=priority, callback_url=callback_url,
            idempotency_key=idempotency_key, run_at=run_at, delay_seconds=delay_seconds)))

    def submit_llm(self, prompt: str | None = None, *, messages: list[Message] | None = None,
                   model: str | None = None, max_tokens: int | None = None, temperature: float | None = None,
                   priority: Priority | str | None = None, callback_url: str | None = None,
                   idempotency_key: str | None = None, run_at: datetime | str | None = None,
                   delay_seconds: float | None = None, top_p: float | None = None,
                   stop: str | list[str] | None = None, seed: int | None = None,
                   presence_penalty: float | None = None, frequency_penalty: float | None = None,
                   response_format: dict[str, Any] | None = None) -> Job:
        """Submit a chat completion: a `prompt`, or `messages` as [{"role", "content"}].
        `run_at` (a datetime with a timezone) or `delay_seconds` schedule it for later. `top_p`,
        `stop`, `seed`, `presence_penalty`, `frequency_penalty` and `response_format` are
        OpenAI's, passed to the model's server."""
        return _calls.as_job(self._send(_calls.submit_llm(
            prompt=prompt, messages=messages, model=model, max_tokens=max_tokens, temperature=temperature,
            priority=priority, callback_url=callback_url, idempotency_key=idempotency_key, run_at=run_at,
            delay_seconds=delay_seconds, top_p=top_p, stop=stop, seed=seed, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty, response_format=response_format)))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: at once when queued or retrying, at its next checkpoint when running."""
        return _calls.as_job(self._send(_calls.cancel(job_id)))

    def retry(self, job_id: str) -> Job:
        """Requeue a failed or dead job (admin keys may requeue any tenant's dead job)."""
        return _calls.as_job(self._send(_calls.retry(job_id)))

    # -- files and batches (OpenAI's Files and Batches APIs, on the gateway) ------------------------

    def submit_embed(self, input: str | list[str], *, model: str | None = None,  # noqa: A002
                     encoding_format: str | None = None, priority: Priority | str | None = None,
                     callback_url: str | None = None, idempotency_key: str | None = None,
                     run_at: datetime | str | None = None, delay_seconds: float | None = None) -> Job:
        """Submit text embeddings (OpenAI's `input`, `model`, `encoding_format`); the result is
        OpenAI's embeddings object."""
        return _calls.as_job(self._send(_calls.submit_embed(
            input=input, model=model, encoding_format=encoding_format, priority=priority, callback_url=callback_url,
            idempotency_key=idempotency_key, run_at=run_at, delay_seconds=delay_seconds)))

    def create_batch(self, file: FileInput, *, endpoint: str, filename: str | None = None,
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
        for _ in self._drive(run):
            pass
        return run.result

    def get_batch(self, batch_id: str) -> Batch:
        return _calls.as_batch(self._send(_calls.get_batch(batch_id)))

    def list_batches(self, *, after: str | None = None, limit: int | None = None) -> BatchPage:
        return _calls.as_batch_page(self._send(_calls.list_batches(after=after, limit=limit)))

    def iter_batches(self, *, page_size: int = 100) -> Iterator[Batch]:
        """All of this tenant's batches, newest first."""
        return self._drive(Run(_plans.iter_batches(self.config, page_size=page_size)))

    def cancel_batch(self, batch_id: str) -> Batch:
        """Cancel a batch: `cancelling`, then `cancelled` with the output of the lines done."""
        return _calls.as_batch(self._send(_calls.cancel_batch(batch_id)))

    def wait_batch(self, batch_id: str, *, timeout: float | None = None, poll_seconds: float = 1.0,
                   on_change: Callable[[Batch], None] | None = None) -> Batch:
        """Poll the batch until it has ended (completed, failed, expired or cancelled) and return it;
        `on_change` sees it whenever its status or counts change. `WaitTimeout` after `timeout`."""
        run = Run(_plans.wait_batch(self.config, batch_id, timeout, poll_seconds))
        for batch in self._drive(run):
            if on_change:
                on_change(batch)
        return run.result

    def get_file(self, file_id: str) -> FileObject:
        return _calls.as_file(self._send(_calls.get_file(file_id)))

    def file_content(self, file_id: str) -> bytes:
        """A file's bytes (a batch's output or error file is JSONL, one line per request)."""
        return _calls.as_bytes(self._send(_calls.file_content(file_id)))

    def delete_file(self, file_id: str) -> None:
        _calls.checked(self._send(_calls.delete_file(file_id)))

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
        return self._drive(Run(_plans.iter_jobs(self.config, state=state, type=type, page_size=page_size)))

    def queues(self) -> QueueStats:
        return _calls.as_queues(self._send(_calls.queues()))

    def usage(self, from_: str | None = None, to: str | None = None) -> dict[str, Any]:
        """Your tenant's LLM token usage per model and UTC day (dates as YYYY-MM-DD; default: the
        last 30 days): {"days": [{date, model, prompt_tokens, completion_tokens, jobs}], "totals"}."""
        return _calls.as_usage(self._send(_calls.usage(from_, to)))

    def dead_letters(self, limit: int | None = None) -> list[Job]:
        return _calls.as_dead_letters(self._send(_calls.dead_letters(limit)))

    def events(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's events from the start (or after `last_event_id`) until its terminal state.

        A cut connection is resumed with `Last-Event-ID`, so no event is lost or repeated.
        """
        return self._drive(Run(_plans.follow(self.config, job_id, last_event_id, deadline=None)))

    def wait(self, job_id: str, *, timeout: float | None = None,
             on_event: Callable[[JobEvent], None] | None = None) -> Job:
        """Follow the job's events until it is terminal and return the final job record.

        Whatever the outcome (succeeded, failed, dead, cancelled) the job is returned; look at
        `job.state`. Raises `WaitTimeout` if it is not terminal within `timeout` seconds.
        """
        run = Run(_plans.wait(self.config, job_id, timeout))
        for event in self._drive(run):
            if on_event:
                on_event(event)
        return run.result

    # -- pipelines -----------------------------------------------------------------------------

    def submit_pipeline(self, file: FileInput, steps: list[dict[str, Any]], *, filename: str | None = None,
                        priority: Priority | str | None = None, idempotency_key: str | None = None) -> Pipeline:
        """Submit a document and its steps: OCR first, then LLM steps (the fields of `submit_llm`)
        whose prompt names `{text}` or `{results}`, optionally `"per_page": True`
        (docs/pipelines.md). Every job is made at once; each step runs when the one before it ends."""
        return _calls.as_pipeline(self._send(_calls.submit_pipeline(
            file, steps, filename=filename, priority=priority, idempotency_key=idempotency_key)))

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """The pipeline: state, progress, steps with their jobs, and its result once it succeeded."""
        return _calls.as_pipeline(self._send(_calls.get_pipeline(pipeline_id)))

    def list_pipelines(self, *, cursor: str | None = None, limit: int | None = None) -> PipelinePage:
        return _calls.as_pipeline_page(self._send(_calls.list_pipelines(cursor=cursor, limit=limit)))

    def cancel_pipeline(self, pipeline_id: str) -> Pipeline:
        """Cancel every job of the pipeline that has not ended (finished steps keep their results)."""
        return _calls.as_pipeline(self._send(_calls.cancel_pipeline(pipeline_id)))

    def retry_pipeline(self, pipeline_id: str) -> Pipeline:
        """Queue a failed pipeline's failed jobs again; the steps after them follow."""
        return _calls.as_pipeline(self._send(_calls.retry_pipeline(pipeline_id)))

    def pipeline_events(self, pipeline_id: str, *, last_event_id: str | None = None) -> Iterator[PipelineEvent]:
        """The pipeline's events until it has ended or failed, resuming with Last-Event-ID."""
        return self._drive(Run(_plans.follow_pipeline(self.config, pipeline_id, last_event_id, deadline=None)))

    def wait_pipeline(self, pipeline_id: str, *, timeout: float | None = None,
                      on_event: Callable[[PipelineEvent], None] | None = None) -> Pipeline:
        """Follow the pipeline until it has ended or failed; return it with its result. Raises
        `WaitTimeout` if it has not within `timeout` seconds."""
        run = Run(_plans.wait_pipeline(self.config, pipeline_id, timeout))
        for event in self._drive(run):
            if on_event:
                on_event(event)
        return run.result

    # -- plumbing: the I/O of the plans in _plans, which make every decision ------------------

    def _send(self, call: Call) -> httpx.Response:
        run = Run(_plans.send(self.config, call))
        for _ in self._drive(run):
            pass  # sending emits nothing; the answer is what the plan returns
        return run.result

    def _drive(self, run: Run[Any]) -> Iterator[Any]:
        """Carry out the plan's steps; yields what it emits."""
        stream: httpx.Response | None = None
        lines: Iterator[str] | None = None
        try:
            for step in run:
                try:
                    match step:
                        case Send(request):
                            run.reply(self._http.send(request))
                        case OpenStream(request):
                            stream = self._http.send(request, stream=True)
                            lines = stream.iter_lines()
                            run.reply(stream)
                        case ReadBody():
                            stream.read()
                        case NextLine():
                            run.reply(next(lines, None))
                        case CloseStream():
                            if stream is not None:
                                stream.close()
                        case Sleep(seconds):
                            time.sleep(seconds)
                        case Emit(item):
                            yield item
                except httpx.TransportError as exc:
                    run.fail(exc)
        finally:
            run.close()
            if stream is not None:
                stream.close()
