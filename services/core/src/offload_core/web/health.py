"""/healthz (the process answers) and /readyz (Redis answers). Unauthenticated; no job data."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from offload_core.web.deps import StoreDep
from offload_core.web.problems import problem_response

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis is reachable", responses={503: {"description": "Redis unreachable"}})
async def readyz(store: StoreDep) -> JSONResponse:
    if await store.ping():
        return JSONResponse({"status": "ready"})
    return problem_response(503, "Not ready", "Redis cannot be reached", headers={"Retry-After": "5"})
