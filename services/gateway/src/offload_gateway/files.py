"""The Files API (OpenAI's): upload a JSONL file for a batch, read it back, list, delete.

Served by the gateway, reads included, so the official `openai` SDK works with one base URL
(`<gateway>/v1`). A file is limited like any upload (OFFLOAD_FILE_MAX_BYTES, 413 beyond, spooled
as it arrives), counts in the tenant's byte quota while it exists, and expires after
OFFLOAD_FILE_RETENTION_SECONDS.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from offload_core.errors import StoreUnavailable
from offload_core.files.record import UPLOAD_PURPOSES, FileRecord
from offload_core.files.store import FileStore
from offload_core.payloads.errors import PayloadUnavailable
from offload_core.web.deps import AuthenticatedCaller
from offload_core.web.problems import STORE_DOWN_WRITE, STORE_RETRY_AFTER_SECONDS, ProblemError

from .routes import OPENAI_API_RESPONSES, PROBLEM
from .uploads import read_upload_form

router = APIRouter(prefix="/v1/files", tags=["files"], responses=OPENAI_API_RESPONSES)

UPLOAD_SCHEMA = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "purpose"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "JSONL: one batch request per line"},
            "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
        }}}}}}


def files_of(caller: AuthenticatedCaller) -> FileStore:
    assert caller.files is not None
    return caller.files


def _not_found(file_id: str) -> ProblemError:
    return ProblemError(404, "File not found", f"no file {file_id} for your tenant (it may have expired)")


@router.post("", responses={200: {"description": "The file object"}, 413: {"description": "Too large", **PROBLEM},
                            422: {"description": "Missing file, empty file or another purpose", **PROBLEM},
                            429: {"description": "File count or byte quota reached", **PROBLEM}},
             openapi_extra=UPLOAD_SCHEMA, summary="Upload a file (purpose=batch)")
async def upload_file(request: Request, caller: AuthenticatedCaller) -> JSONResponse:
    settings = caller.settings
    form = await read_upload_form(request, settings, max_bytes=settings.file_max_bytes, text_fields=("purpose",))
    with form.document as document:
        purpose = form.fields["purpose"]
        if purpose not in UPLOAD_PURPOSES:
            raise ProblemError(422, "Invalid purpose", f"purpose must be one of {', '.join(UPLOAD_PURPOSES)} "
                                                       f"(got {purpose!r}): files here feed batches")
        try:
            status, record = await files_of(caller).create_upload(caller.principal.tenant, form.filename, purpose,
                                                                  document)
        except (StoreUnavailable, PayloadUnavailable) as exc:
            raise ProblemError(503, "Service unavailable", f"the file could not be stored: {exc}",
                               headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}) from exc
    if status == "too_many":
        raise ProblemError(429, "Too many files", f"your tenant has {settings.file_max_per_tenant} files; delete some "
                           "(DELETE /v1/files/{id}) or wait for them to expire", headers={"Retry-After": "60"})
    if status == "bytes_exceeded":
        raise ProblemError(429, "Byte quota exceeded", f"your tenant's files and unfinished jobs would hold more than "
                           f"{settings.max_queued_bytes_per_tenant} bytes; delete files or wait for jobs to finish",
                           headers={"Retry-After": "30"})
    return JSONResponse(record.to_api())


@router.get("", summary="List your files, newest first")
async def list_files(caller: AuthenticatedCaller, purpose: str | None = None,
                     limit: int = Query(default=1000, ge=1, le=10_000), after: str | None = None,
                     order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
    try:
        found, more = await files_of(caller).list(caller.principal.tenant, purpose=purpose, after=after, limit=limit,
                                                  newest_first=order == "desc")
    except ValueError as exc:
        raise ProblemError(422, "Invalid cursor", str(exc)) from None
    return _page([f.to_api() for f in found], more)


def _page(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


async def _file(caller: AuthenticatedCaller, file_id: str) -> FileRecord:
    record = await files_of(caller).get(file_id, caller.principal.tenant)
    if record is None:
        raise _not_found(file_id)
    return record


@router.get("/{file_id}", responses={404: {"description": "No such file", **PROBLEM}}, summary="A file's object")
async def get_file(file_id: str, caller: AuthenticatedCaller) -> dict[str, Any]:
    return (await _file(caller, file_id)).to_api()


@router.get("/{file_id}/content", responses={404: {"description": "No such file", **PROBLEM}},
            summary="A file's bytes (streamed)")
async def file_content(file_id: str, caller: AuthenticatedCaller) -> StreamingResponse:
    record = await _file(caller, file_id)
    filename = record.filename.replace('"', "").replace("\\", "")
    return StreamingResponse(files_of(caller).stream(record), media_type="application/octet-stream",
                             headers={"Content-Length": str(record.bytes),
                                      "Content-Disposition": f'attachment; filename="{filename}"'})


@router.delete("/{file_id}", responses={404: {"description": "No such file", **PROBLEM},
                                        409: {"description": "A batch still reads it", **PROBLEM}},
               summary="Delete a file")
async def delete_file(file_id: str, caller: AuthenticatedCaller) -> dict[str, Any]:
    try:
        status, batch_id = await files_of(caller).delete(file_id, caller.principal.tenant)
    except StoreUnavailable as exc:
        raise ProblemError(503, "Service unavailable", STORE_DOWN_WRITE,
                           headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}) from exc
    if status == "missing":
        raise _not_found(file_id)
    if status == "in_use":
        raise ProblemError(409, "File in use", f"batch {batch_id} still reads this file; cancel it or wait for it "
                           "to end before deleting the file")
    return {"id": file_id, "object": "file", "deleted": True}
