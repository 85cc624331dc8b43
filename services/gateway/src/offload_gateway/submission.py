"""Turning a validated request into a stored, queued job, and the outcome into an HTTP answer."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import anyio
from fastapi.responses import JSONResponse

from offload_core.errors import RequestRefused, StoreFull, StoreUnavailable
from offload_core.jobs.store import JobStore, NewJob
from offload_core.observability.logs import bind_job
from offload_core.payloads.errors import PayloadUnavailable
from offload_core.payloads.ref import PayloadRef
from offload_core.payloads.s3 import PayloadSource, S3PayloadStore, goes_to_s3
from offload_core.settings import Settings
from offload_core.types import Priority
from offload_core.web.deps import Caller
from offload_core.web.problems import STORE_DOWN_SUBMIT, STORE_RETRY_AFTER_SECONDS, ProblemError
from offload_core.webhooks.signing import secret_for
from offload_core.webhooks.urlguard import Allowlist, UrlRefused, check_url

log = logging.getLogger("offload.gateway")

MAX_IDEMPOTENCY_KEY_LENGTH = 255

T = TypeVar("T")


def admitted(check: Callable[[], T], *, where: str = "") -> T:
    """Run one of the core's admission checks (admit_llm, admit_embed: the same for a job, a
    pipeline step and a batch line); what it refuses is a 422 saying what to fix. `where` names
    the request in the message ("step 2 (summary): ")."""
    try:
        return check()
    except RequestRefused as exc:
        raise ProblemError(422, exc.title, f"{where}{exc.detail}", **exc.extra) from None


def refuse_over_limit(status: str, settings: Settings, retry_after: int, *, jobs: int = 1) -> None:
    """The 429 for a submission the tenant's limits refused (the submit scripts' statuses:
    rate, tokens per minute, unfinished jobs, their bytes); nothing for any other status.
    `jobs`: how many jobs the submission makes (a pipeline makes many)."""
    wait = {"Retry-After": str(max(1, retry_after or 30))}
    if status == "rate_limited":
        raise ProblemError(429, "Rate limit exceeded",
                           f"more than {settings.rate_limit_per_minute} submissions this minute for your tenant",
                           headers=wait)
    if status == "tokens_limited":
        raise ProblemError(429, "Token limit exceeded",
                           f"your tenant's LLM jobs this minute would ask for more than "
                           f"{settings.llm_tokens_per_minute} tokens (max_tokens plus the prompt)", headers=wait)
    if status == "quota_exceeded":
        held = (f"this submission makes {jobs} jobs, and your tenant may have at most "
                f"{settings.max_queued_per_tenant} unfinished jobs" if jobs > 1
                else f"your tenant already has {settings.max_queued_per_tenant} unfinished jobs")
        raise ProblemError(429, "Queued-job quota exceeded", f"{held}; wait for some to finish", headers=wait)
    if status == "bytes_exceeded":
        raise ProblemError(429, "Queued-bytes quota exceeded",
                           f"your tenant's unfinished jobs would hold more than "
                           f"{settings.max_queued_bytes_per_tenant} bytes of input; wait for some to finish",
                           headers=wait)


def parse_priority(value: str | None) -> Priority:
    try:
        return Priority(value or Priority.NORMAL)
    except ValueError:
        raise ProblemError(422, "Invalid priority",
                           f"priority must be one of {', '.join(p.value for p in Priority)}") from None


def parse_callback(value: str | None, settings: Settings, tenant: str) -> str | None:
    if not value:
        return None
    try:
        check_url(value, Allowlist.parse(settings.webhook_allowlist))
    except UrlRefused as exc:
        raise ProblemError(422, "Invalid callback_url", str(exc)) from None
    if secret_for(settings, tenant) is None:
        raise ProblemError(422, "Webhooks not configured",
                           "no webhook signing secret is configured for your tenant, so callbacks cannot be sent; "
                           "ask the operator to set one, or poll the status API")
    return value


@dataclass(frozen=True)
class Schedule:
    """When a job should run, as the client asked (kept in the job's params) and as a time."""

    run_at: float | None  # None: now
    asked: dict[str, Any]  # {"run_at": "..."} or {"delay_seconds": n}; {} for now


def parse_schedule(run_at: str | None, delay_seconds: str | float | None, settings: Settings) -> Schedule:
    """`run_at` (RFC 3339 with a UTC offset) or `delay_seconds` (0 up to the maximum), not both."""
    limit = settings.max_schedule_ahead_seconds
    if run_at is not None and delay_seconds is not None:
        raise ProblemError(422, "Invalid schedule", "give run_at or delay_seconds, not both")
    if run_at is not None:
        try:
            when = datetime.fromisoformat(str(run_at).strip())
        except ValueError:
            raise ProblemError(422, "Invalid run_at", "run_at must be an RFC 3339 time with a UTC offset, "
                                                      "e.g. 2026-12-06T15:00:00Z") from None
        if when.tzinfo is None or when.utcoffset() is None:
            raise ProblemError(422, "Invalid run_at", "run_at needs a UTC offset (Z or +01:00, say): "
                                                      "without one the time is ambiguous")
        ts = when.timestamp()
        if ts - time.time() > limit:
            raise ProblemError(422, "Invalid run_at", f"run_at may be at most {limit} s ({limit / 86400:g} days) ahead")
        return Schedule(ts, {"run_at": str(run_at).strip()})
    if delay_seconds is not None:
        try:
            delay = float(delay_seconds)
        except (TypeError, ValueError):
            raise ProblemError(422, "Invalid delay_seconds", "delay_seconds must be a number of seconds") from None
        if not 0 <= delay <= limit:  # (NaN fails this too)
            raise ProblemError(422, "Invalid delay_seconds", f"delay_seconds must be from 0 to {limit}")
        return Schedule(time.time() + delay if delay > 0 else None, {"delay_seconds": delay})
    return Schedule(None, {})


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_IDEMPOTENCY_KEY_LENGTH or not value.isprintable():
        raise ProblemError(400, "Invalid Idempotency-Key",
                           f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters")
    return value


async def submit_with_payload(caller: Caller, new: NewJob, source: PayloadSource | bytes) -> JSONResponse:
    """Keep the job's input where it belongs, then submit: inline in the job's record, or, with
    the S3 payload store and an input at or above the threshold, in object storage (the record
    then keeps its key, SHA-256 and size: a claim check). An object whose submit did not create a
    job (a replay, a refusal, an error) is deleted again."""
    payloads = caller.payloads
    size = len(source) if isinstance(source, bytes) else source.size
    if payloads is None or not goes_to_s3(caller.settings, size):
        data = source if isinstance(source, bytes) else await anyio.to_thread.run_sync(source.read_all)
        return await submit(caller.store, replace(new, payload=data))
    job_id = str(uuid.uuid4())
    ref = await payloads.put(payloads.key_for(job_id), source)
    new = replace(new, job_id=job_id, payload=b"", payload_ref=ref.to_json(), payload_size=ref.size,
                  payload_sha256=ref.sha256)
    try:
        response = await submit(caller.store, new)
    except BaseException:
        await drop_payload(payloads, ref)
        raise
    if response.status_code != 202:  # a replay of an earlier job: this copy is not used
        await drop_payload(payloads, ref)
    return response


async def drop_payload(payloads: S3PayloadStore, ref: PayloadRef) -> None:
    """Delete an input from object storage; a failure leaves it to the bucket's lifecycle rule."""
    try:
        await payloads.adelete(ref)
    except PayloadUnavailable as exc:  # the bucket's lifecycle rule removes it later
        log.warning("could not delete the unused payload %s: %s", ref.key, exc)


async def submit(store: JobStore, new: NewJob) -> JSONResponse:
    """Store and enqueue `new` atomically and answer 202 (new), 200 (replay), 409, 429 or 503."""
    try:
        return await _submit(store, new)
    except StoreFull:
        raise  # Redis refused the script before it wrote: the store-full answer (web.problems) is true
    except StoreUnavailable as exc:
        log.warning("job store unavailable during a submit: %s", exc)
        # Redis may have run the script even so (a deadline that fired after it did): say only
        # what is known, and how a retry stays safe.
        raise ProblemError(503, "Service unavailable", STORE_DOWN_SUBMIT,
                           headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}) from exc


async def _submit(store: JobStore, new: NewJob) -> JSONResponse:
    outcome = await store.submit(new)
    if outcome.job_id:
        bind_job(outcome.job_id)  # the rest of this request's log lines (access log too) name the job
    base = store.settings.status_public_url.rstrip("/")
    if outcome.status == "created":
        assert outcome.job is not None
        return JSONResponse(outcome.job.to_api(status_base_url=base), status_code=202, headers={"Location": f"{base}/v1/jobs/{outcome.job_id}"})
    if outcome.status == "existing":
        job = await store.get(outcome.job_id, new.tenant)
        if job is None:
            raise ProblemError(409, "Idempotency-Key expired job",
                               "this Idempotency-Key named a job that has expired; use a new key")
        return JSONResponse(job.to_api(status_base_url=base), status_code=200,
                            headers={"Location": f"{base}/v1/jobs/{outcome.job_id}"})
    if outcome.status == "conflict":
        raise ProblemError(409, "Idempotency-Key reused",
                           "this Idempotency-Key was already used with a different request body; "
                           "use a new key for a different job", job_id=outcome.job_id)
    refuse_over_limit(outcome.status, store.settings, outcome.retry_after)
    raise RuntimeError(f"unexpected submit outcome {outcome.status}")
