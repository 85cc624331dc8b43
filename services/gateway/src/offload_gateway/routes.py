"""The gateway's API: submit OCR and LLM jobs, cancel, requeue. Each route validates, then
hands a `NewJob` to `submission.submit`, which stores and enqueues it in one atomic step."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from offload_core.documents.formats import DocumentRejected, inspect
from offload_core.documents.languages import parse_languages
from offload_core.embed.request import EmbedParams, admit_embed
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.store import NewJob
from offload_core.llm.admission import admit_llm
from offload_core.llm.request import LlmParams
from offload_core.observability.tracing import job_trace_context
from offload_core.payloads.ref import PayloadRef
from offload_core.probe.request import ProbeParams
from offload_core.types import JobState, JobType, Priority
from offload_core.web.deps import AuthenticatedCaller
from offload_core.web.problems import ProblemError

from .submission import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    admitted,
    drop_payload,
    parse_callback,
    parse_idempotency_key,
    parse_priority,
    parse_schedule,
    submit,
    submit_with_payload,
)
from .uploads import read_ocr_form

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
# Read by the routes from the request's headers, and documented here: declared as a FastAPI
# header parameter it cost ~4% of the submit path's CPU, validated on every request
# (BENCHMARKS.md, "Sixth round"). parse_idempotency_key checks it.
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Same key + same body within the retention window returns the first job",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
}

PROBLEM = {"content": {"application/problem+json": {}}}
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Replay of an earlier submission with the same Idempotency-Key"},
    202: {"description": "Accepted: stored and queued; follow the Location header"},
    400: {"description": "Malformed JSON or multipart body, or invalid Idempotency-Key header", **PROBLEM},
    401: {"description": "Missing or invalid API key", **PROBLEM},
    408: {"description": "Upload not completed in time", **PROBLEM},
    409: {"description": "Idempotency-Key reused with a different body", **PROBLEM},
    413: {"description": "Upload too large", **PROBLEM},
    415: {"description": "Unsupported media type (the LLM body must be application/json)", **PROBLEM},
    422: {"description": "Invalid request (an unknown or disallowed model, or an OCR language no worker has, "
                         "lists the ones there are)", **PROBLEM},
    429: {"description": "Rate limit, tokens-per-minute limit, queued-job or queued-bytes quota exceeded "
                         "(see Retry-After)", **PROBLEM},
    503: {"description": "Job store unavailable (see Retry-After)", **PROBLEM},
}

OCR_FORM_SCHEMA = {
    "parameters": [IDEMPOTENCY_KEY],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": "PNG, JPEG, TIFF or PDF; the type is read from the bytes"},
                        "languages": {"type": "string", "default": "eng", "example": "eng",
                                      "description": "Tesseract language codes joined by '+' (e.g. eng+deu); "
                                                     "each must be installed on the OCR workers (422 lists them)"},
                        "priority": {"type": "string", "enum": [p.value for p in Priority], "default": "normal"},
                        "callback_url": {"type": "string", "format": "uri"},
                        "run_at": {"type": "string", "format": "date-time",
                                   "description": "Run at this time (RFC 3339 with a UTC offset); the job is "
                                                  "`scheduled` until then"},
                        "delay_seconds": {"type": "number", "minimum": 0,
                                          "description": "Run this many seconds from now (instead of run_at)"},
                    },
                }
            }
        },
    }
}


@router.post("/ocr", status_code=202, responses=SUBMIT_RESPONSES, openapi_extra=OCR_FORM_SCHEMA,
             summary="Submit a document for OCR")
async def submit_ocr(request: Request, caller: AuthenticatedCaller) -> JSONResponse:
    settings = caller.settings
    key = parse_idempotency_key(request.headers.get("idempotency-key"))
    form = await read_ocr_form(request, settings)
    # The document, spooled once as it arrived (in memory if small, else a temporary file);
    # removed when this request ends, however it ends.
    with form.document as document:
        try:
            languages = parse_languages(form.languages, settings.ocr_default_languages)
        except ValueError as exc:
            raise ProblemError(422, "Invalid languages", str(exc)) from None
        request.app.state.ocr_languages.refuse_missing(languages)
        priority = parse_priority(form.priority)
        callback = parse_callback(form.callback_url, settings, caller.principal.tenant)
        schedule = parse_schedule(form.run_at, form.delay_seconds, settings)
        try:
            # Cheap header-level checks (type, pages, pixels, encryption) off the event loop,
            # read from the spool file where there is one (mapped, not copied).
            info = await anyio.to_thread.run_sync(
                lambda: inspect(document.path or document.read_all(), max_pages=settings.ocr_max_pages,
                                max_pixels=settings.ocr_max_pixels, dpi=settings.ocr_dpi))
        except DocumentRejected as exc:
            status = 415 if getattr(exc, "unsupported_type", False) else 422
            raise ProblemError(status, "Document refused", exc.message) from None
        params = {"languages": languages, "filename": form.filename, "kind": str(info.kind.value),
                  "pages": info.pages, "bytes": document.size, **schedule.asked}
        new = NewJob(type=JobType.OCR, tenant=caller.principal.tenant, priority=priority, payload=b"",
                     params=params, idempotency_key=key, callback_url=callback, run_at=schedule.run_at,
                     **job_trace_context())
        return await submit_with_payload(caller, new, document)


class Scheduling(BaseModel):
    """What every submission may say besides its input: priority, webhook, and when to run."""

    priority: Priority = Priority.NORMAL
    callback_url: str | None = Field(default=None, max_length=2048)
    run_at: str | None = Field(default=None, max_length=64, description=(
        "Run at this time (RFC 3339 with a UTC offset, e.g. 2026-12-06T15:00:00Z); the job is `scheduled` until then"))
    delay_seconds: float | None = Field(default=None, ge=0, description="Run this many seconds from now")


class LlmJobRequest(LlmParams, Scheduling):
    pass


GATEWAY_ONLY_FIELDS = frozenset(Scheduling.model_fields)


@router.post("/llm", status_code=202, responses=SUBMIT_RESPONSES, openapi_extra={"parameters": [IDEMPOTENCY_KEY]},
             summary="Submit an LLM chat completion")
async def submit_llm(body: LlmJobRequest, caller: AuthenticatedCaller, request: Request) -> JSONResponse:
    settings = caller.settings
    key = parse_idempotency_key(request.headers.get("idempotency-key"))
    admission = admitted(lambda: admit_llm(body, settings, caller.principal.tenant))
    callback = parse_callback(body.callback_url, settings, caller.principal.tenant)
    schedule = parse_schedule(body.run_at, body.delay_seconds, settings)
    # The stored request is the validated LlmParams part of the body, as the worker reads it.
    payload = body.model_dump_json(exclude_none=True, exclude=GATEWAY_ONLY_FIELDS).encode()
    summary = {"model": admission.route.name, "max_tokens": body.max_tokens,
               "temperature": body.temperature, "prompt_preview": body.preview(), **schedule.asked}
    new = NewJob(type=JobType.LLM, tenant=caller.principal.tenant, priority=body.priority, payload=payload,
                 params=summary, idempotency_key=key, callback_url=callback, run_at=schedule.run_at,
                 tokens=admission.cost, **job_trace_context())
    return await submit_with_payload(caller, new, payload)


class EmbedJobRequest(EmbedParams, Scheduling):
    pass


@router.post("/embed", status_code=202, responses=SUBMIT_RESPONSES, openapi_extra={"parameters": [IDEMPOTENCY_KEY]},
             summary="Submit text embeddings")
async def submit_embed(body: EmbedJobRequest, caller: AuthenticatedCaller, request: Request) -> JSONResponse:
    """OpenAI's embeddings parameters (`input`, `model`, `encoding_format`, `dimensions`), run by
    the LLM workers; the result is OpenAI's embeddings object (`data[{index, embedding}]`,
    `model`, `usage`)."""
    settings = caller.settings
    key = parse_idempotency_key(request.headers.get("idempotency-key"))
    model = admitted(lambda: admit_embed(body, settings))
    callback = parse_callback(body.callback_url, settings, caller.principal.tenant)
    schedule = parse_schedule(body.run_at, body.delay_seconds, settings)
    payload = body.model_dump_json(exclude_none=True, exclude=GATEWAY_ONLY_FIELDS).encode()
    summary = {"model": model, "inputs": len(body.texts()), "encoding_format": body.encoding_format, **schedule.asked}
    new = NewJob(type=JobType.EMBED, tenant=caller.principal.tenant, priority=body.priority, payload=payload,
                 params=summary, idempotency_key=key, callback_url=callback, run_at=schedule.run_at,
                 **job_trace_context())
    return await submit_with_payload(caller, new, payload)


class ProbeJobRequest(ProbeParams, Scheduling):
    pass


@router.post("/probe", status_code=202, responses={**SUBMIT_RESPONSES, 403: {
    "description": "Probe jobs are switched off, or only for admin tenants", **PROBLEM}},
             openapi_extra={"parameters": [IDEMPOTENCY_KEY]}, summary="Submit a diagnostic probe job")
async def submit_probe(body: ProbeJobRequest, caller: AuthenticatedCaller, request: Request) -> JSONResponse:
    """A job that sleeps (with progress, cancellable) and succeeds or fails as asked, run by any
    worker: for `helm test`, synthetic monitoring and benchmarks (OFFLOAD_PROBE_JOBS says who may)."""
    settings = caller.settings
    if settings.probe_jobs == "off":
        raise ProblemError(403, "Probe jobs are off", "this deployment does not accept probe jobs (OFFLOAD_PROBE_JOBS=off)")
    if settings.probe_jobs == "admin" and not caller.principal.admin:
        raise ProblemError(403, "Probe jobs are for admins", "only admin tenants may submit probe jobs "
                                                             "(OFFLOAD_PROBE_JOBS=admin)")
    if body.sleep_seconds > settings.probe_max_sleep_seconds:
        raise ProblemError(422, "sleep_seconds too large",
                           f"sleep_seconds may be at most {settings.probe_max_sleep_seconds}")
    key = parse_idempotency_key(request.headers.get("idempotency-key"))
    callback = parse_callback(body.callback_url, settings, caller.principal.tenant)
    schedule = parse_schedule(body.run_at, body.delay_seconds, settings)
    payload = body.model_dump_json(exclude=GATEWAY_ONLY_FIELDS).encode()
    params = {**body.model_dump(exclude=GATEWAY_ONLY_FIELDS), **schedule.asked}
    new = NewJob(type=JobType.PROBE, tenant=caller.principal.tenant, priority=body.priority, payload=payload,
                 params=params, idempotency_key=key, callback_url=callback, run_at=schedule.run_at,
                 **job_trace_context())
    return await submit(caller.store, new)


# What any route of the OpenAI-shaped APIs (files, batches) may answer besides its own.
OPENAI_API_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", **PROBLEM},
    422: {"description": "A parameter is invalid (e.g. a cursor that names nothing of yours)", **PROBLEM},
    503: {"description": "Job store unavailable", **PROBLEM},
}
ID_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", **PROBLEM},
    404: {"description": "No such job for this tenant", **PROBLEM},
    409: {"description": "The job's state does not allow this", **PROBLEM},
    503: {"description": "Job store unavailable", **PROBLEM},
}


@router.delete("/{job_id}", responses={200: {"description": "Cancelled or cancelling"}, **ID_RESPONSES},
               summary="Cancel a job")
async def cancel_job(job_id: str, caller: AuthenticatedCaller) -> JSONResponse:
    store, principal = caller.store, caller.principal
    status, state = await store.cancel(job_id, principal.tenant)
    if status == "missing":
        raise ProblemError(404, "Job not found", f"no job {job_id} for your tenant")
    if status == "terminal":
        raise ProblemError(409, "Job already finished", f"the job is {state}; only unfinished jobs can be cancelled")
    job = await store.get(job_id, principal.tenant)
    if status == "cancelled" and job is not None:  # ended here: no worker will ever count it
        job_metrics.finished(job.type, job.priority, JobState.CANCELLED)
        if job.payload_ref and caller.payloads is not None:
            await drop_payload(caller.payloads, PayloadRef.from_json(job.payload_ref))
    body = job.to_api(status_base_url=store.settings.status_public_url.rstrip("/")) if job else {"id": job_id}
    return JSONResponse(body, status_code=200 if status == "cancelled" else 202)


@router.post("/{job_id}/retry", responses={202: {"description": "Requeued"}, **ID_RESPONSES},
             summary="Requeue a failed or dead job")
async def retry_job(job_id: str, caller: AuthenticatedCaller) -> JSONResponse:
    store, principal = caller.store, caller.principal
    tenant = None if principal.admin else principal.tenant
    status, state = await store.requeue(job_id, tenant)
    if status == "missing":
        raise ProblemError(404, "Job not found", f"no job {job_id} for your tenant")
    if status == "not_requeueable":
        raise ProblemError(409, "Job cannot be requeued", f"the job is {state}; only failed or dead jobs can be requeued")
    if status == "expired":
        raise ProblemError(409, "Job input expired", "the job's input is no longer stored; submit it again")
    if status == "quota_exceeded":
        raise ProblemError(429, "Queued-job quota exceeded", "your tenant has too many unfinished jobs",
                           headers={"Retry-After": "30"})
    if status == "bytes_exceeded":
        raise ProblemError(429, "Queued-bytes quota exceeded",
                           "your tenant's unfinished jobs hold too many bytes of input", headers={"Retry-After": "30"})
    job = await store.get(job_id, tenant)
    base = store.settings.status_public_url.rstrip("/")
    return JSONResponse(job.to_api(status_base_url=base) if job else {"id": job_id}, status_code=202,
                        headers={"Location": f"{base}/v1/jobs/{job_id}"})

