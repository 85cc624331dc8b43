"""The status API for pipelines: state, steps and result; the tenant's pipelines; live events.
Writes (submit, cancel, retry) are the gateway's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from offload_core.pipelines.store import PipelineStore, PipelineView
from offload_core.web.deps import AuthenticatedCaller, Caller
from offload_core.web.problems import ProblemError

from .routes import COMMON_RESPONSES, EVENTS_RESPONSES
from .sse import EVENT_ID, LiveEventResponse, pipeline_event_stream, stream_deadline

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])


async def _own_pipeline(caller: Caller, pipeline_id: str, *, with_result: bool = False) -> PipelineView:
    view = await PipelineStore(caller.store).get(pipeline_id, caller.principal.tenant, with_result=with_result)
    if view is None:
        raise ProblemError(404, "Pipeline not found", f"no pipeline {pipeline_id} for your tenant")
    return view


def _base(caller: Caller) -> str:
    return caller.settings.status_public_url.rstrip("/")


@router.get("/{pipeline_id}", responses=COMMON_RESPONSES,
            summary="A pipeline's state, progress, steps with their jobs, and its result once it succeeded")
async def get_pipeline(pipeline_id: str, caller: AuthenticatedCaller) -> dict[str, Any]:
    view = await _own_pipeline(caller, pipeline_id, with_result=True)
    return view.to_api(status_base_url=_base(caller))


@router.get("", responses=COMMON_RESPONSES, summary="Your pipelines, newest first, with cursor paging")
async def list_pipelines(caller: AuthenticatedCaller, cursor: Annotated[str | None, Query(max_length=100)] = None,
                         limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    try:
        views, next_cursor = await PipelineStore(caller.store).list(caller.principal.tenant, cursor=cursor,
                                                                    limit=limit)
    except ValueError as exc:
        raise ProblemError(422, "Invalid cursor", str(exc)) from None
    return {"pipelines": [v.to_api(status_base_url=_base(caller)) for v in views], "next_cursor": next_cursor}


@router.get("/{pipeline_id}/events", responses=EVENTS_RESPONSES,
            summary="Live events of every step (SSE): replays, follows live, resumes from Last-Event-ID")
async def pipeline_events(
    pipeline_id: str, request: Request, caller: AuthenticatedCaller,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> LiveEventResponse:
    """Opens with the pipeline as it is (`pipeline`), then each job's move (`state`), `blocked`
    when a step failed, and `end` (succeeded, failed or cancelled), where it closes."""
    await _own_pipeline(caller, pipeline_id)
    after = (last_event_id or "0-0").strip()
    if not EVENT_ID.match(after):
        raise ProblemError(400, "Invalid Last-Event-ID", "Last-Event-ID must be an event id this stream sent")
    slot = request.app.state.stream_slots.acquire(caller.principal.tenant)
    deadline = stream_deadline(caller.settings.sse_max_stream_seconds)
    stream = pipeline_event_stream(PipelineStore(caller.store), request.app.state.event_hub, pipeline_id, after,
                                   deadline, status_base_url=_base(caller))
    return LiveEventResponse(stream, slot)
