"""The gateway's pipeline API: submit a document with its steps, cancel, retry. Reads (state,
steps, result, live events) are the status service's, like a job's (Location header)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from offload_core.documents.formats import DocumentRejected, inspect
from offload_core.documents.languages import parse_languages
from offload_core.errors import StoreFull, StoreUnavailable
from offload_core.llm.admission import admit_llm
from offload_core.observability.logs import bind_job
from offload_core.observability.tracing import current_trace_id
from offload_core.payloads.s3 import goes_to_s3
from offload_core.pipelines.spec import PipelineRequest
from offload_core.pipelines.store import NewPipeline, OcrInput, PipelineStore, PipelineView
from offload_core.web.deps import AuthenticatedCaller, Caller
from offload_core.web.problems import STORE_DOWN_SUBMIT, STORE_RETRY_AFTER_SECONDS, ProblemError

from .routes import ID_RESPONSES, IDEMPOTENCY_KEY, SUBMIT_RESPONSES
from .submission import admitted, drop_payload, parse_idempotency_key, refuse_over_limit
from .uploads import read_ocr_form

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])

PIPELINE_FORM_SCHEMA = {
    "parameters": [IDEMPOTENCY_KEY],
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "pipeline"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "PNG, JPEG, TIFF or PDF"},
            "pipeline": {"type": "string", "description": (
                "The steps as JSON: {\"steps\": [{\"type\": \"ocr\"}, {\"type\": \"llm\", \"per_page\": true, "
                "\"prompt\": \"... {text} ...\"}, {\"type\": \"llm\", \"prompt\": \"... {results} ...\"}], "
                "\"priority\": \"normal\"}. LLM steps take the fields of POST /v1/jobs/llm; {text} is the text "
                "of the step before, {results} the same headed by page.")},
        }}}}},
}


def _status_base(caller: Caller) -> str:
    return caller.settings.status_public_url.rstrip("/")


def _answer(view: PipelineView, caller: Caller, status: int) -> JSONResponse:
    base = _status_base(caller)
    return JSONResponse(view.to_api(status_base_url=base), status_code=status,
                        headers={"Location": f"{base}/v1/pipelines/{view.id}"})


def parse_pipeline(text: str | None) -> PipelineRequest:
    if not text:
        raise ProblemError(422, "Missing pipeline", "send the steps as JSON in the multipart field 'pipeline'")
    try:
        return PipelineRequest.model_validate_json(text)
    except ValidationError as exc:
        # The same problem+json as an invalid JSON body, each error located under `pipeline`.
        raise RequestValidationError([{**e, "loc": ("pipeline", *e["loc"])} for e in exc.errors(
            include_url=False, include_context=False)]) from None


@router.post("", status_code=202, responses=SUBMIT_RESPONSES, openapi_extra=PIPELINE_FORM_SCHEMA,
             summary="Submit a document pipeline: OCR, then LLM steps")
async def submit_pipeline(request: Request, caller: AuthenticatedCaller) -> JSONResponse:
    settings, tenant = caller.settings, caller.principal.tenant
    key = parse_idempotency_key(request.headers.get("idempotency-key"))
    form = await read_ocr_form(request, settings)
    with form.document as document:
        spec = parse_pipeline(form.pipeline)
        ocr = spec.steps[0]
        try:
            languages = parse_languages(ocr.languages, settings.ocr_default_languages)
        except ValueError as exc:
            raise ProblemError(422, "Invalid languages", f"step 1: {exc}") from None
        request.app.state.ocr_languages.refuse_missing(languages, where="step 1 (ocr): ")
        llm_params: list[dict[str, Any]] = []
        checks = []
        for number, step in enumerate(spec.llm_steps(), start=2):
            checks.append(admitted(lambda: admit_llm(step.request(), settings, tenant),
                                   where=f"step {number} ({step.name}): "))
            llm_params.append({"model": checks[-1].route.name, "max_tokens": step.max_tokens,
                               "temperature": step.temperature})
        try:
            info = await anyio.to_thread.run_sync(
                lambda: inspect(document.path or document.read_all(), max_pages=settings.ocr_max_pages,
                                max_pixels=settings.ocr_max_pixels, dpi=settings.ocr_dpi))
        except DocumentRejected as exc:
            raise ProblemError(415 if getattr(exc, "unsupported_type", False) else 422, "Document refused",
                               exc.message) from None
        jobs = spec.job_count(info.pages)
        if jobs > settings.pipeline_max_jobs:
            raise ProblemError(422, "Pipeline too large",
                               f"these steps over {info.pages} pages make {jobs} jobs; a pipeline may make at most "
                               f"{settings.pipeline_max_jobs} (fewer per_page steps, or split the document)")
        # Under a tokens-per-minute limit the pipeline counts what its LLM jobs may use, as their
        # prompts stand at submit (the text a step is given is not known yet).
        tokens = sum(c.cost * (info.pages if s.per_page else 1) for c, s in zip(checks, spec.llm_steps()))
        if settings.llm_tokens_per_minute and tokens > settings.llm_tokens_per_minute:
            raise ProblemError(422, "Pipeline too large for the token limit",
                               f"its LLM jobs may use {tokens} tokens (max_tokens plus their prompts); your tenant may "
                               f"use {settings.llm_tokens_per_minute} per minute: lower max_tokens, or fewer pages")
        params = {"languages": languages, "filename": form.filename, "kind": str(info.kind.value),
                  "pages": info.pages, "bytes": document.size}
        store = PipelineStore(caller.store)
        new = NewPipeline(tenant=tenant, request=spec, pages=info.pages, llm_params=llm_params, tokens=tokens,
                          idempotency_key=key, trace_id=current_trace_id(),
                          document=OcrInput(b"", params, payload_sha256=document.sha256))
        payloads, ref = caller.payloads, None
        if payloads is not None and goes_to_s3(settings, document.size):
            # The claim check, as for an OCR job: the OCR step's record keeps the object's key.
            pipeline_id = str(uuid.uuid4())
            ref = await payloads.put(payloads.key_for(pipeline_id), document)
            new = replace(new, pipeline_id=pipeline_id, document=OcrInput(
                b"", params, payload_ref=ref.to_json(), payload_size=ref.size, payload_sha256=ref.sha256))
        else:
            data = await anyio.to_thread.run_sync(document.read_all)
            new = replace(new, document=OcrInput(data, params, payload_sha256=document.sha256))
        try:
            outcome = await store.create(new)
        except StoreUnavailable as exc:
            if ref is not None:
                await drop_payload(payloads, ref)
            if isinstance(exc, StoreFull):
                raise  # refused before anything was written: the store-full answer (web.problems)
            raise ProblemError(503, "Service unavailable", STORE_DOWN_SUBMIT,
                               headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}) from exc
    if ref is not None and outcome.status != "created":
        await drop_payload(payloads, ref)
    if outcome.pipeline_id:
        bind_job(outcome.pipeline_id)
    if outcome.status in ("created", "existing"):
        view = await store.get(outcome.pipeline_id, tenant)
        if view is None:
            raise ProblemError(409, "Idempotency-Key expired pipeline",
                               "this Idempotency-Key named a pipeline that has expired; use a new key")
        return _answer(view, caller, 202 if outcome.status == "created" else 200)
    if outcome.status == "conflict":
        raise ProblemError(409, "Idempotency-Key reused", "this Idempotency-Key was already used with a different "
                           "request; use a new key for a different pipeline", pipeline_id=outcome.pipeline_id)
    refuse_over_limit(outcome.status, settings, outcome.retry_after, jobs=jobs)
    raise RuntimeError(f"unexpected pipeline outcome {outcome.status}")


@router.delete("/{pipeline_id}", responses={200: {"description": "Cancelled, or cancelling (a step was running)"},
                                            **ID_RESPONSES}, summary="Cancel a pipeline")
async def cancel_pipeline(pipeline_id: str, caller: AuthenticatedCaller) -> JSONResponse:
    """Cancels every job of the pipeline that has not ended; finished steps keep their results."""
    view = await PipelineStore(caller.store).cancel(pipeline_id, caller.principal.tenant)
    if view is None:
        raise ProblemError(404, "Pipeline not found", f"no pipeline {pipeline_id} for your tenant")
    return _answer(view, caller, 200)


@router.post("/{pipeline_id}/retry", responses={202: {"description": "The failed steps are queued again"},
                                                **ID_RESPONSES}, summary="Retry a failed pipeline")
async def retry_pipeline(pipeline_id: str, caller: AuthenticatedCaller) -> JSONResponse:
    """Queues the failed jobs again; the steps after them run when they succeed. Steps that
    succeeded are not run again."""
    status, view = await PipelineStore(caller.store).retry(pipeline_id, caller.principal.tenant)
    if status == "missing" or view is None:
        raise ProblemError(404, "Pipeline not found", f"no pipeline {pipeline_id} for your tenant")
    if status == "not_failed":
        raise ProblemError(409, "Pipeline has not failed", f"the pipeline is {view.state}; only a failed one is retried")
    if status == "cancelled":
        raise ProblemError(409, "Pipeline was cancelled",
                           "steps of this pipeline were cancelled (by you, or because it stayed failed for the "
                           "retention period), so it cannot finish; submit it again")
    if status == "expired":
        raise ProblemError(409, "Step input expired", "a failed step's input is no longer stored; submit it again")
    if status in ("quota_exceeded", "bytes_exceeded"):
        raise ProblemError(429, "Quota exceeded", "your tenant has too many unfinished jobs or bytes to requeue the "
                           "failed steps", headers={"Retry-After": "30"})
    if status != "requeued":
        raise ProblemError(409, "Pipeline cannot be retried", f"a failed step could not be requeued ({status})")
    return _answer(view, caller, 202)

