"""The Batches API (OpenAI's): run every line of an uploaded JSONL file as a job, and collect
the answers into output files.

Served by the gateway, reads included (one base URL for the `openai` SDK: `<gateway>/v1`). The
whole input file is validated inside POST /v1/batches, before anything is queued; a bad file is
refused with 400 naming its lines. Lines run as ordinary jobs of the tenant, fed by the gateway's
batch coordinator (offload_core/batches/coordinator.py). Offload's extras ride in `metadata`:
`priority` (default `low`) and `callback_url` (a signed webhook when the batch ends).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from offload_core.batches.store import BatchRefused, BatchRequest, BatchStore, parse_metadata
from offload_core.errors import StoreUnavailable
from offload_core.payloads.errors import PayloadUnavailable
from offload_core.web.deps import AuthenticatedCaller
from offload_core.web.problems import STORE_DOWN_WRITE, STORE_RETRY_AFTER_SECONDS, ProblemError

from .routes import OPENAI_API_RESPONSES, PROBLEM
from .submission import parse_callback

router = APIRouter(prefix="/v1/batches", tags=["batches"], responses=OPENAI_API_RESPONSES)


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(max_length=64)
    endpoint: str = Field(max_length=64, description="/v1/chat/completions or /v1/embeddings")
    completion_window: str = Field(default="24h", max_length=16)
    metadata: dict[str, Any] | None = Field(default=None, description=(
        "Up to 16 string pairs. Offload reads `priority` (high | normal | low; default low) and `callback_url`"))


def batches_of(caller: AuthenticatedCaller) -> BatchStore:
    assert caller.batches is not None
    return caller.batches


def _refusal(exc: BatchRefused) -> ProblemError:
    retry = exc.extra.pop("retry_after", None)
    return ProblemError(exc.status, exc.title, exc.detail, headers={"Retry-After": str(retry)} if retry else None,
                        **exc.extra)


@router.post("", responses={200: {"description": "The batch, in_progress"},
                            400: {"description": "The input file was refused; `errors` names the lines", **PROBLEM},
                            404: {"description": "No such input file", **PROBLEM},
                            422: {"description": "Invalid endpoint, window or metadata", **PROBLEM},
                            429: {"description": "Too many batches running", **PROBLEM}},
             summary="Create a batch from an uploaded file")
async def create_batch(body: CreateBatch, caller: AuthenticatedCaller) -> dict[str, Any]:
    store, tenant = batches_of(caller), caller.principal.tenant
    try:
        _, _, callback = parse_metadata(body.metadata)
        callback_url = parse_callback(callback or None, caller.settings, tenant) or ""
        batch = await store.create(tenant, BatchRequest(body.input_file_id, body.endpoint, body.completion_window,
                                                        body.metadata or {}), callback_url=callback_url)
    except BatchRefused as exc:
        raise _refusal(exc) from None
    except (StoreUnavailable, PayloadUnavailable) as exc:
        raise ProblemError(503, "Service unavailable", f"the batch could not be made: {exc}; nothing was queued",
                           headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}) from exc
    return await store.to_api(batch)


@router.get("", summary="List your batches, newest first")
async def list_batches(caller: AuthenticatedCaller, after: str | None = None,
                       limit: int = Query(default=20, ge=1, le=100)) -> dict[str, Any]:
    store = batches_of(caller)
    try:
        found, more = await store.list(caller.principal.tenant, after=after, limit=limit)
    except ValueError as exc:
        raise ProblemError(422, "Invalid cursor", str(exc)) from None
    data = [await store.to_api(b) for b in found]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


@router.get("/{batch_id}", responses={404: {"description": "No such batch", **PROBLEM}}, summary="A batch")
async def get_batch(batch_id: str, caller: AuthenticatedCaller) -> dict[str, Any]:
    store = batches_of(caller)
    batch = await store.get(batch_id, caller.principal.tenant)
    if batch is None:
        raise ProblemError(404, "Batch not found", f"no batch {batch_id} for your tenant (it may have expired)")
    return await store.to_api(batch)


@router.post("/{batch_id}/cancel", responses={404: {"description": "No such batch", **PROBLEM},
                                              409: {"description": "The batch has ended", **PROBLEM}},
             summary="Cancel a batch: cancelling, then cancelled with the output so far")
async def cancel_batch(batch_id: str, caller: AuthenticatedCaller) -> dict[str, Any]:
    store, tenant = batches_of(caller), caller.principal.tenant
    try:
        status, current = await store.cancel(batch_id, tenant)
    except StoreUnavailable as exc:
        raise ProblemError(503, "Service unavailable", STORE_DOWN_WRITE,
                           headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}) from exc
    if status == "missing":
        raise ProblemError(404, "Batch not found", f"no batch {batch_id} for your tenant")
    if status == "refused":
        raise ProblemError(409, "Batch cannot be cancelled", f"the batch is {current}; only a batch in_progress "
                           "can be cancelled")
    batch = await store.get(batch_id, tenant)
    assert batch is not None
    return await store.to_api(batch)
