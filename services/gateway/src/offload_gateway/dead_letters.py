"""Bulk work on dead letters, for admin keys: requeue many dead jobs at once, or purge them.

Both take either `job_ids` (at most MAX_BATCH) or `all: true` (the newest MAX_BATCH dead jobs,
of one `type` if given) and answer what became of each, and how many dead jobs remain, so a
caller with more dead letters than one batch repeats until `remaining` is 0.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from offload_core.payloads.ref import PayloadRef
from offload_core.types import JobType
from offload_core.web.deps import AuthenticatedCaller, Caller
from offload_core.web.problems import ProblemError

from .routes import PROBLEM
from .submission import drop_payload

log = logging.getLogger("offload.gateway.dead_letters")
router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])

MAX_BATCH = 500
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON body", **PROBLEM},
    401: {"description": "Missing or invalid API key", **PROBLEM},
    403: {"description": "Not an admin key", **PROBLEM},
    422: {"description": "Invalid request", **PROBLEM},
    503: {"description": "Job store unavailable (see Retry-After)", **PROBLEM},
}


class Selection(BaseModel):
    job_ids: Annotated[list[str], Field(max_length=MAX_BATCH, description="Dead jobs to act on")] = []
    all: bool = Field(default=False, description=f"Act on the newest {MAX_BATCH} dead jobs (of `type`, if given)")
    type: JobType | None = Field(default=None, description="With `all`: only dead jobs of this type")

    @model_validator(mode="after")
    def _one_way(self) -> "Selection":
        if bool(self.job_ids) == self.all:
            raise ValueError("give either job_ids (a list of job ids) or all: true")
        if self.type is not None and not self.all:
            raise ValueError("type goes with all: true")
        return self


def _admin(caller: Caller) -> None:
    if not caller.principal.admin:
        raise ProblemError(403, "Admin keys only", "bulk requeue and purge act on every tenant's dead letters; "
                                                   "use an admin key (OFFLOAD_ADMIN_TENANTS), or POST "
                                                   "/v1/jobs/{id}/retry for one of your own jobs")


async def _selected(caller: Caller, selection: Selection) -> list[str]:
    if selection.job_ids:
        return list(dict.fromkeys(selection.job_ids))
    ids, _ = await caller.store.dead_ids(MAX_BATCH if selection.type is None else MAX_BATCH * 4)
    if selection.type is None:
        return ids
    jobs = [await caller.store.get(job_id, None) for job_id in ids]
    return [j.id for j in jobs if j is not None and j.type == selection.type][:MAX_BATCH]


@router.post("/requeue", responses=RESPONSES, summary="Requeue dead jobs in bulk (admin keys)")
async def requeue_dead(selection: Selection, caller: AuthenticatedCaller) -> dict[str, Any]:
    """Each job is requeued as `POST /v1/jobs/{id}/retry` would (its tenant's quotas apply);
    those that cannot be are listed in `skipped` with the reason."""
    _admin(caller)
    requeued, skipped = [], []
    for job_id in await _selected(caller, selection):
        status, state = await caller.store.requeue(job_id, None)
        if status == "queued":
            requeued.append(job_id)
        else:
            skipped.append({"id": job_id, "reason": status if state is None else f"{status} ({state})"})
    log.info("bulk requeue: %d dead jobs requeued, %d skipped", len(requeued), len(skipped))
    return {"requeued": requeued, "skipped": skipped, "remaining": await caller.store.dead_count()}


@router.post("/purge", responses=RESPONSES, summary="Delete dead jobs for good (admin keys)")
async def purge_dead(selection: Selection, caller: AuthenticatedCaller) -> dict[str, Any]:
    """Each dead job's record, events and Idempotency-Key are deleted, it leaves every index,
    and its input leaves object storage. Jobs no longer dead (requeued meanwhile) are skipped."""
    _admin(caller)
    purged, skipped = [], []
    for job_id, status, detail in await caller.store.purge_dead(await _selected(caller, selection)):
        if status != "purged":
            skipped.append({"id": job_id, "reason": status if detail is None else f"{status} ({detail})"})
            continue
        purged.append(job_id)
        if detail and caller.payloads is not None:
            try:
                ref = PayloadRef.from_json(detail)
            except ValueError:
                continue
            await drop_payload(caller.payloads, ref)
    log.info("bulk purge: %d dead jobs deleted, %d skipped", len(purged), len(skipped))
    return {"purged": purged, "skipped": skipped, "remaining": await caller.store.dead_count()}
