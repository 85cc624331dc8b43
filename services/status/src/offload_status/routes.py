"""The status API: job state, result, live events, listings and queue depth. Read-only."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from offload_core.jobs.record import Job
from offload_core.queue.scaling import desired_replicas, scaled_queues
from offload_core.types import WORKER_TYPES, JobState, JobType
from offload_core.web.deps import AuthenticatedCaller
from offload_core.web.problems import ProblemError

from .sse import EVENT_ID, LiveEventResponse, job_event_stream, stream_deadline

router = APIRouter(prefix="/v1", tags=["status"])

PROBLEM = {"content": {"application/problem+json": {}}}
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", **PROBLEM},
    404: {"description": "No such job for this tenant", **PROBLEM},
    422: {"description": "Invalid request", **PROBLEM},
    503: {"description": "Job store unavailable (see Retry-After)", **PROBLEM},
}


async def _own_job(store, job_id: str, tenant: str) -> Job:
    job = await store.get(job_id, tenant)
    if job is None:
        raise ProblemError(404, "Job not found", f"no job {job_id} for your tenant")
    return job


@router.get("/jobs/{job_id}", responses=COMMON_RESPONSES, summary="A job's state, progress, error and trace id")
async def get_job(job_id: str, caller: AuthenticatedCaller) -> dict[str, Any]:
    job = await _own_job(caller.store, job_id, caller.principal.tenant)
    return job.to_api(status_base_url=caller.settings.status_public_url.rstrip("/"))


@router.get("/jobs/{job_id}/result", responses={**COMMON_RESPONSES, 409: {"description": "Not succeeded (yet)", **PROBLEM}},
            summary="The result of a succeeded job")
async def get_result(job_id: str, caller: AuthenticatedCaller) -> Response:
    store = caller.store
    job = await _own_job(store, job_id, caller.principal.tenant)
    if job.state is not JobState.SUCCEEDED:
        detail = f"the job is {job.state.value}; a result exists only once it has succeeded"
        if job.error:
            detail += f" (error: {job.error.message})"
        raise ProblemError(409, "No result", detail, state=job.state.value)
    raw = await store.result(job_id)
    if raw is None:
        raise ProblemError(404, "Result expired", "the result is past its retention period")
    return Response(raw, media_type="application/json")


EVENTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES, 200: {"content": {"text/event-stream": {}}},
    400: {"description": "Invalid Last-Event-ID", **PROBLEM},
    429: {"description": "Your tenant has its limit of live streams open on this server (see Retry-After)",
          **PROBLEM},
    503: {"description": "Job store unavailable, or this server has its limit of live streams open "
                         "(see Retry-After)", **PROBLEM}}


@router.get("/jobs/{job_id}/events", responses=EVENTS_RESPONSES,
    summary="Live events (SSE): replays history, follows live, resumes from Last-Event-ID")
async def job_events(
    job_id: str, request: Request, caller: AuthenticatedCaller,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> LiveEventResponse:
    """The stream ends after the job's final state, or after OFFLOAD_SSE_MAX_STREAM_SECONDS:
    reconnect with Last-Event-ID (EventSource and the Offload clients do) to continue."""
    store = caller.store
    await _own_job(store, job_id, caller.principal.tenant)
    after = (last_event_id or "0-0").strip()
    if not EVENT_ID.match(after):
        raise ProblemError(400, "Invalid Last-Event-ID", "Last-Event-ID must be an event id this stream sent")
    slot = request.app.state.stream_slots.acquire(caller.principal.tenant)  # 429 / 503 at the limits
    deadline = stream_deadline(caller.settings.sse_max_stream_seconds)
    return LiveEventResponse(job_event_stream(store, request.app.state.event_hub, job_id, after, deadline), slot)


@router.get("/jobs", responses=COMMON_RESPONSES, summary="Your jobs, newest first, with cursor paging")
async def list_jobs(
    caller: AuthenticatedCaller,
    state: JobState | None = None,
    type: Annotated[JobType | None, Query(description="ocr or llm")] = None,  # noqa: A002 - API name
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    try:
        jobs, next_cursor = await caller.store.list_jobs(caller.principal.tenant, state=state, job_type=type,
                                                         cursor=cursor, limit=limit)
    except ValueError as exc:
        raise ProblemError(422, "Invalid cursor", str(exc)) from None
    base = caller.settings.status_public_url.rstrip("/")
    return {"jobs": [j.to_api(status_base_url=base) for j in jobs], "next_cursor": next_cursor}


@router.get("/queues", responses=COMMON_RESPONSES, summary="Queue depth, oldest age, running and dead; wanted replicas")
async def queues(caller: AuthenticatedCaller, request: Request) -> dict[str, Any]:
    settings = caller.settings
    stats = await caller.store.queue_stats()
    workers = {}
    for jt in WORKER_TYPES:
        backlog = sum(stats["queues"][q]["depth"] for q in scaled_queues(jt))
        scaling = settings.scaling(jt)
        workers[jt.value] = {
            "backlog": backlog,
            "running": stats["running_by_type"][jt.value],
            "desired_replicas": desired_replicas(backlog, **scaling),
            "scaling": scaling,
        }
    stats["workers"] = workers
    cluster = getattr(request.app.state, "cluster_view", None)
    stats["cluster"] = await cluster.snapshot() if cluster else {"available": False,
                                                               "reason": "not running in a Kubernetes cluster"}
    return stats


@router.get("/dead-letters", responses=COMMON_RESPONSES, summary="Dead jobs, newest first (all tenants for admin keys)")
async def dead_letters(caller: AuthenticatedCaller,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    principal = caller.principal
    base = caller.settings.status_public_url.rstrip("/")
    jobs = await caller.store.dead_jobs(None if principal.admin else principal.tenant, limit)
    return {"jobs": [job.to_api(status_base_url=base) for job in jobs]}


USAGE_MAX_DAYS = 92


def _day(text: str | None, default: dt.date, name: str) -> dt.date:
    if text is None:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ProblemError(422, f"Invalid {name}", f"{name} must be a date, YYYY-MM-DD (UTC days)") from None


@router.get("/usage", responses=COMMON_RESPONSES, summary="Your tenant's LLM token usage per model and day")
async def usage(caller: AuthenticatedCaller,
                from_: Annotated[str | None, Query(alias="from", max_length=10,
                                                   description="First day, YYYY-MM-DD (UTC); default: 29 days before `to`")] = None,
                to: Annotated[str | None, Query(max_length=10, description="Last day, YYYY-MM-DD (UTC); default: today")] = None,
                ) -> dict[str, Any]:
    """Prompt and completion tokens of your succeeded LLM jobs as their model's server reported
    them, counted under the model name you asked for, by the UTC day each finished. Days are
    kept OFFLOAD_LLM_USAGE_RETENTION_DAYS; one request covers at most 92 days."""
    last = _day(to, dt.datetime.now(dt.timezone.utc).date(), "to")
    first = _day(from_, last - dt.timedelta(days=29), "from")
    if first > last:
        raise ProblemError(422, "Invalid range", "from must not be after to")
    span = (last - first).days + 1
    if span > USAGE_MAX_DAYS:
        raise ProblemError(422, "Range too long", f"ask for at most {USAGE_MAX_DAYS} days at a time (asked for {span})")
    days = [(first + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range(span)]
    counted = await caller.store.token_usage(caller.principal.tenant, days)
    totals: dict[str, dict[str, int]] = {}
    rows = []
    for day in days:
        for model, counts in sorted(counted.get(day, {}).items()):
            rows.append({"date": f"{day[:4]}-{day[4:6]}-{day[6:]}", "model": model, **counts})
            total = totals.setdefault(model, dict.fromkeys(counts, 0))
            for name, value in counts.items():
                total[name] += value
    return {"tenant": caller.principal.tenant, "from": first.isoformat(), "to": last.isoformat(),
            "days": rows, "totals": totals}
