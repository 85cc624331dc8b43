"""Every endpoint as a plain description of the request, the `httpx.Request` built from it,
and the decoding of its answer.

No I/O here: `OffloadClient` and `AsyncOffloadClient` send the same requests (see `_plans`), so
the two clients cannot drift apart in what they ask or how they read the answer.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import httpx

from .config import ClientConfig
from .errors import error_from_response
from .models import (
    Batch,
    BatchPage,
    FileObject,
    Job,
    JobPage,
    JobState,
    JobType,
    Pipeline,
    PipelinePage,
    Priority,
    QueueStats,
)
from .version import USER_AGENT

FileInput = str | os.PathLike[str] | bytes | BinaryIO
Message = dict[str, str]


@dataclass(frozen=True)
class Call:
    method: str
    service: Literal["gateway", "status"]
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def url(config: ClientConfig, call: Call) -> str:
    base = config.gateway_url if call.service == "gateway" else config.status_url
    return base + call.path


def http_request(config: ClientConfig, call: Call, *, read_timeout: float | None = None) -> httpx.Request:
    """The whole request: the call, the API key, and how long to wait (`read_timeout` for the
    gaps between the bytes of an answer, when not `config.timeout`)."""
    timeout = httpx.Timeout(config.timeout, read=config.timeout if read_timeout is None else read_timeout)
    headers = {"Authorization": f"Bearer {config.api_key}", "User-Agent": USER_AGENT, **call.headers}
    return httpx.Request(call.method, url(config, call), params=call.params, json=call.json, files=call.files,
                         data=call.data, headers=headers, extensions={"timeout": timeout.as_dict()})


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def read_file(file: FileInput, filename: str | None) -> tuple[str, bytes]:
    """The upload's name and bytes. Read whole, so a retried request sends the same bytes."""
    if isinstance(file, bytes):
        return filename or "document", file
    if isinstance(file, (str, os.PathLike)):
        path = Path(file)
        return filename or path.name, path.read_bytes()
    name = filename or Path(getattr(file, "name", "document") or "document").name
    return name, file.read()


def schedule(run_at: datetime | str | None, delay_seconds: float | None) -> dict[str, Any]:
    """When to run a job: `run_at` (a datetime with a timezone, or RFC 3339 text) or
    `delay_seconds`; neither: now."""
    if run_at is not None and delay_seconds is not None:
        raise ValueError("give run_at or delay_seconds, not both")
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None:
            raise ValueError("run_at needs a timezone (a naive datetime is ambiguous)")
        run_at = run_at.isoformat()
    return _clean({"run_at": run_at, "delay_seconds": delay_seconds})


def submit_ocr(file: FileInput, *, filename: str | None, languages: str | None, priority: Priority | str | None,
               callback_url: str | None, idempotency_key: str | None, run_at: datetime | str | None = None,
               delay_seconds: float | None = None) -> Call:
    name, data = read_file(file, filename)
    form = _clean({"languages": languages, "priority": priority and str(Priority(priority)),
                   "callback_url": callback_url,
                   **{k: str(v) for k, v in schedule(run_at, delay_seconds).items()}})
    return Call("POST", "gateway", "/v1/jobs/ocr", files={"file": (name, data, "application/octet-stream")},
                data=form, headers={"Idempotency-Key": idempotency_key or new_idempotency_key()})


def submit_llm(*, prompt: str | None, messages: list[Message] | None, model: str | None, max_tokens: int | None,
               temperature: float | None, priority: Priority | str | None, callback_url: str | None,
               idempotency_key: str | None, run_at: datetime | str | None = None,
               delay_seconds: float | None = None, top_p: float | None = None,
               stop: str | list[str] | None = None, seed: int | None = None, presence_penalty: float | None = None,
               frequency_penalty: float | None = None, response_format: dict[str, Any] | None = None) -> Call:
    """`response_format`: OpenAI's, e.g. {"type": "json_object"} or {"type": "json_schema",
    "json_schema": {"name": ..., "schema": {...}}}; the other options are OpenAI's too."""
    if (prompt is None) == (messages is None):
        raise ValueError("give exactly one of prompt= or messages=")
    body = _clean({"prompt": prompt, "messages": messages, "model": model, "max_tokens": max_tokens,
                   "temperature": temperature, "top_p": top_p, "stop": stop, "seed": seed,
                   "presence_penalty": presence_penalty, "frequency_penalty": frequency_penalty,
                   "response_format": response_format, "priority": priority and str(Priority(priority)),
                   "callback_url": callback_url, **schedule(run_at, delay_seconds)})
    return Call("POST", "gateway", "/v1/jobs/llm", json=body,
                headers={"Idempotency-Key": idempotency_key or new_idempotency_key()})


def submit_embed(*, input: str | list[str], model: str | None, encoding_format: str | None,  # noqa: A002
                 priority: Priority | str | None, callback_url: str | None, idempotency_key: str | None,
                 run_at: datetime | str | None = None, delay_seconds: float | None = None) -> Call:
    """Text embeddings: OpenAI's `input` (a text or a list), `model`, `encoding_format`."""
    body = _clean({"input": input, "model": model, "encoding_format": encoding_format,
                   "priority": priority and str(Priority(priority)), "callback_url": callback_url,
                   **schedule(run_at, delay_seconds)})
    return Call("POST", "gateway", "/v1/jobs/embed", json=body,
                headers={"Idempotency-Key": idempotency_key or new_idempotency_key()})


# -- files and batches (OpenAI's Files and Batches APIs, on the gateway) --------------------------

BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")


def upload_file(file: FileInput, *, filename: str | None, purpose: str = "batch") -> Call:
    name, data = read_file(file, filename or ("batch.jsonl" if isinstance(file, bytes) else None))
    return Call("POST", "gateway", "/v1/files", files={"file": (name, data, "application/jsonl")},
                data={"purpose": purpose})


def get_file(file_id: str) -> Call:
    return Call("GET", "gateway", f"/v1/files/{_opaque(file_id, 'file-')}")


def file_content(file_id: str) -> Call:
    return Call("GET", "gateway", f"/v1/files/{_opaque(file_id, 'file-')}/content")


def delete_file(file_id: str) -> Call:
    return Call("DELETE", "gateway", f"/v1/files/{_opaque(file_id, 'file-')}")


def create_batch(input_file_id: str, *, endpoint: str, completion_window: str = "24h",
                 metadata: dict[str, str] | None = None) -> Call:
    if endpoint not in BATCH_ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(BATCH_ENDPOINTS)}")
    body = _clean({"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": completion_window,
                   "metadata": metadata})
    return Call("POST", "gateway", "/v1/batches", json=body)


def get_batch(batch_id: str) -> Call:
    return Call("GET", "gateway", f"/v1/batches/{_opaque(batch_id, 'batch_')}")


def list_batches(*, after: str | None, limit: int | None) -> Call:
    return Call("GET", "gateway", "/v1/batches", params=_clean({"after": after, "limit": limit}))


def cancel_batch(batch_id: str) -> Call:
    return Call("POST", "gateway", f"/v1/batches/{_opaque(batch_id, 'batch_')}/cancel")


def _opaque(ident: str, prefix: str) -> str:
    """A file or batch id: its prefix, then letters and digits only (nothing that changes the path)."""
    ident = str(ident)
    if not ident.startswith(prefix) or not ident[len(prefix):].isalnum():
        raise ValueError(f"not a {prefix.rstrip('-_')} id: {ident!r}")
    return ident


def cancel(job_id: str) -> Call:
    return Call("DELETE", "gateway", f"/v1/jobs/{_id(job_id)}")


def retry(job_id: str) -> Call:
    return Call("POST", "gateway", f"/v1/jobs/{_id(job_id)}/retry")


def get_job(job_id: str) -> Call:
    return Call("GET", "status", f"/v1/jobs/{_id(job_id)}")


def result(job_id: str) -> Call:
    return Call("GET", "status", f"/v1/jobs/{_id(job_id)}/result")


def list_jobs(*, state: JobState | str | None, type: JobType | str | None, cursor: str | None,  # noqa: A002
              limit: int | None) -> Call:
    params = _clean({"state": state and str(JobState(state)), "type": type and str(JobType(type)),
                     "cursor": cursor, "limit": limit})
    return Call("GET", "status", "/v1/jobs", params=params)


def queues() -> Call:
    return Call("GET", "status", "/v1/queues")


def usage(from_: str | None, to: str | None) -> Call:
    """Your tenant's LLM token usage per model and UTC day (dates as YYYY-MM-DD)."""
    return Call("GET", "status", "/v1/usage", params=_clean({"from": from_, "to": to}))


def dead_letters(limit: int | None) -> Call:
    return Call("GET", "status", "/v1/dead-letters", params=_clean({"limit": limit}))


def events(job_id: str, last_event_id: str) -> Call:
    """The job's event stream, after `last_event_id` when there is one."""
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return Call("GET", "status", f"/v1/jobs/{_id(job_id)}/events", headers=headers)


def submit_pipeline(file: FileInput, steps: list[dict[str, Any]], *, filename: str | None,
                    priority: Priority | str | None, idempotency_key: str | None) -> Call:
    """A document and its steps: [{"type": "ocr", ...}, {"type": "llm", "prompt": "... {text}", ...}]."""
    name, data = read_file(file, filename)
    spec = _clean({"steps": steps, "priority": priority and str(Priority(priority))})
    return Call("POST", "gateway", "/v1/pipelines", files={"file": (name, data, "application/octet-stream")},
                data={"pipeline": json.dumps(spec)},
                headers={"Idempotency-Key": idempotency_key or new_idempotency_key()})


def get_pipeline(pipeline_id: str) -> Call:
    return Call("GET", "status", f"/v1/pipelines/{_id(pipeline_id)}")


def list_pipelines(*, cursor: str | None, limit: int | None) -> Call:
    return Call("GET", "status", "/v1/pipelines", params=_clean({"cursor": cursor, "limit": limit}))


def cancel_pipeline(pipeline_id: str) -> Call:
    return Call("DELETE", "gateway", f"/v1/pipelines/{_id(pipeline_id)}")


def retry_pipeline(pipeline_id: str) -> Call:
    return Call("POST", "gateway", f"/v1/pipelines/{_id(pipeline_id)}/retry")


def pipeline_events(pipeline_id: str, last_event_id: str) -> Call:
    """The pipeline's event stream, after `last_event_id` when there is one."""
    call = events(pipeline_id, last_event_id)
    return Call("GET", "status", f"/v1/pipelines/{_id(pipeline_id)}/events", headers=call.headers)


def _id(job_id: str) -> str:
    # Job and pipeline ids are UUIDs; refusing anything else keeps a stray "/" or "?" out of the path.
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise ValueError(f"not a job id: {job_id!r}") from None


# -- answers ----------------------------------------------------------------------------------


def checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_from_response(response)
    return response


def as_job(response: httpx.Response) -> Job:
    return Job.model_validate(checked(response).json())


def as_usage(response: httpx.Response) -> dict[str, Any]:
    return checked(response).json()


def as_page(response: httpx.Response) -> JobPage:
    return JobPage.model_validate(checked(response).json())


def as_queues(response: httpx.Response) -> QueueStats:
    return QueueStats.model_validate(checked(response).json())


def as_dead_letters(response: httpx.Response) -> list[Job]:
    return [Job.model_validate(j) for j in checked(response).json()["jobs"]]


def as_pipeline(response: httpx.Response) -> Pipeline:
    return Pipeline.model_validate(checked(response).json())


def as_pipeline_page(response: httpx.Response) -> PipelinePage:
    return PipelinePage.model_validate(checked(response).json())
def as_file(response: httpx.Response) -> FileObject:
    return FileObject.model_validate(checked(response).json())


def as_batch(response: httpx.Response) -> Batch:
    return Batch.model_validate(checked(response).json())


def as_batch_page(response: httpx.Response) -> BatchPage:
    return BatchPage.model_validate(checked(response).json())


def as_bytes(response: httpx.Response) -> bytes:
    return checked(response).content


def as_result(response: httpx.Response) -> dict[str, Any]:
    return json.loads(checked(response).content)
