"""Reading an OCR upload: multipart parsed as it streams in, with a byte limit and a deadline.

Starlette's own `request.form()` would buffer any size; here the body is counted while it is
read, so an oversized upload is refused (413) after at most the limit, however it is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from offload_core.web.problems import ProblemError

FORM_OVERHEAD_BYTES = 64 * 1024  # room for the other form fields and multipart boundaries
UPLOAD_DEADLINE_SECONDS = 120


@dataclass(frozen=True)
class OcrForm:
    data: bytes
    filename: str
    declared_type: str
    languages: str | None
    priority: str | None
    callback_url: str | None
    run_at: str | None = None
    delay_seconds: str | None = None


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, "Upload too large", f"the upload exceeds the limit of {limit} bytes ({limit // (1024 * 1024)} MiB)")


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit - FORM_OVERHEAD_BYTES)
        yield chunk


async def read_ocr_form(request: Request, max_bytes: int) -> OcrForm:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise ProblemError(415, "Unsupported media type",
                           "send the document as multipart/form-data with the file in the 'file' field")
    limit = max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(max_bytes)
    parser = MultiPartParser(request.headers, _limited(request, limit), max_files=1, max_fields=8,
                             max_part_size=16 * 1024)
    try:
        async with asyncio.timeout(UPLOAD_DEADLINE_SECONDS):
            form = await parser.parse()
    except TimeoutError:
        raise ProblemError(408, "Upload too slow",
                           f"the upload did not complete within {UPLOAD_DEADLINE_SECONDS} s") from None
    except MultiPartException as exc:
        raise ProblemError(400, "Malformed upload", f"the multipart body could not be read: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ProblemError(422, "Missing file", "attach the document in the multipart field 'file'")
        data = await upload.read()
        if len(data) > max_bytes:
            raise _too_large(max_bytes)
        if not data:
            raise ProblemError(422, "Empty file", "the uploaded file is empty (0 bytes)")

        def text(name: str) -> str | None:
            value = form.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                raise ProblemError(422, "Invalid field", f"the form field '{name}' must be text, not a file")
            return value.strip() or None

        return OcrForm(data=data, filename=(upload.filename or "upload")[:255],
                       declared_type=upload.content_type or "", languages=text("languages"),
                       priority=text("priority"), callback_url=text("callback_url"), run_at=text("run_at"),
                       delay_seconds=text("delay_seconds"))
    finally:
        await form.close()
