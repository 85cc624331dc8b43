"""The status API: job state, result, live events, listings and queue depth. Read-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from offload_core.jobs.record import Job
from offload_core.queue.scaling import desired_replicas, scaled_queues
from offload_core.types import WORKER_TYPES, JobState, JobType
from offload_core.web.deps import AuthenticatedCaller
from offload_core.web.problems import ProblemError

from .sse import EVENT_ID, job_event_stream

router = APIRouter(prefix="/v1", tags=["status"])

_PROBLEM = {"content": {"application/problem+json": {}}}
_COMMON: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", **_PROBLEM},
    404: {"description": "No such job for this tenant", **_PROBLEM},
    422: {"description": "Invalid request", **_PROBLEM},
    503: {"description": "Job store unavailable (see Retry-After)", **_PROBLEM},
}


async def _own_job(store, job_id: str, tenant: str) -> Job:
    job = await store.get(job_id, tenant)
    if job is None:
        raise ProblemError(404, "Job not found", f"no job {job_id} for your tenant")
    return job


@router.get("/jobs/{job_id}", responses=_COMMON, summary="A job's state, progress, error and trace id")
async def get_job(job_id: str, caller: AuthenticatedCaller) -> dict[str, Any]:
    job = await _own_job(caller.store, job_id, caller.principal.tenant)
    return job.to_api(status_base_url=caller.settings.status_public_url.rstrip("/"))


@router.get("/jobs/{job_id}/result", responses={**_COMMON, 409: {"description": "Not succeeded (yet)", **_PROBLEM}},
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


@router.get("/jobs/{job_id}/events", responses={**_COMMON, 200: {"content": {"text/event-stream": {}}}},
            summary="Live events (SSE): replays history, follows live, resumes from Last-Event-ID")
async def job_events(
    job_id: str, request: Request, caller: AuthenticatedCaller,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    store = caller.store
    await _own_job(store, job_id, caller.principal.tenant)
    after = (last_event_id or "0-0").strip()
    if not EVENT_ID.match(after):
        raise ProblemError(400, "Invalid Last-Event-ID", "Last-Event-ID must be an event id this stream sent")
    return StreamingResponse(
        job_event_stream(request, store, job_id, after), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/jobs", responses=_COMMON, summary="Your jobs, newest first, with cursor paging")
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


@router.get("/queues", responses=_COMMON, summary="Queue depth, oldest age, running and dead; wanted replicas")
async def queues(caller: AuthenticatedCaller, request: Request) -> dict[str, Any]:
    settings = caller.settings
    stats = await caller.store.queue_stats()
    workers = {}
    for jt in WORKER_TYPES:
        backlog = sum(stats["queues"][q]["depth"] for q in scaled_queues(jt))
        running = stats["running_by_type"][jt.value]
        scaling = settings.scaling(jt)
        workers[jt.value] = {
            "backlog": backlog,
            "running": running,
            "desired_replicas": desired_replicas(backlog, running, **scaling),
            "scaling": scaling,
        }
    stats["workers"] = workers
    cluster = getattr(request.app.state, "cluster_view", None)
    stats["cluster"] = await cluster.snapshot() if cluster else {"available": False,
                                                               "reason": "not running in a Kubernetes cluster"}
    return stats


@router.get("/dead-letters", responses=_COMMON, summary="Dead jobs, newest first (all tenants for admin keys)")
async def dead_letters(caller: AuthenticatedCaller,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    principal = caller.principal
    base = caller.settings.status_public_url.rstrip("/")
    jobs = await caller.store.dead_jobs(None if principal.admin else principal.tenant, limit)
    return {"jobs": [job.to_api(status_base_url=base) for job in jobs]}
