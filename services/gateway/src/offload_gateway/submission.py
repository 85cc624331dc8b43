"""Turning a validated request into a stored, queued job, and the outcome into an HTTP answer."""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

from offload_core.errors import StoreUnavailable
from offload_core.jobs.store import JobStore, NewJob
from offload_core.observability.logs import bind_job
from offload_core.settings import Settings
from offload_core.types import Priority
from offload_core.web.problems import STORE_DOWN_SUBMIT, STORE_RETRY_AFTER_SECONDS, ProblemError
from offload_core.webhooks.signing import secret_for
from offload_core.webhooks.urlguard import Allowlist, UrlRefused, check_url

log = logging.getLogger("offload.gateway")

MAX_IDEMPOTENCY_KEY_LENGTH = 255


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


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_IDEMPOTENCY_KEY_LENGTH or not value.isprintable():
        raise ProblemError(400, "Invalid Idempotency-Key",
                           f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters")
    return value


async def submit(store: JobStore, new: NewJob) -> JSONResponse:
    """Store and enqueue `new` atomically and answer 202 (new), 200 (replay), 409, 429 or 503."""
    try:
        return await _submit(store, new)
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
    if outcome.status == "rate_limited":
        raise ProblemError(429, "Rate limit exceeded",
                           f"more than {store.settings.rate_limit_per_minute} submissions this minute for your tenant",
                           headers={"Retry-After": str(outcome.retry_after)})
    if outcome.status == "quota_exceeded":
        raise ProblemError(429, "Queued-job quota exceeded",
                           f"your tenant already has {store.settings.max_queued_per_tenant} unfinished jobs; "
                           "wait for some to finish", headers={"Retry-After": str(outcome.retry_after)})
    raise RuntimeError(f"unexpected submit outcome {outcome.status}")
