"""Reading an OCR upload: the multipart body parsed as it streams in, the document written once
to a spool (`offload_core.payloads.spool`), with a byte limit and a deadline.

Starlette's `request.form()` would buffer any size, and reading its upload back made more
copies (the spool file, then the whole document in memory). Here the body is counted while it
is read, so an oversized upload is refused (413) as soon as it passes the limit, however it is
sent; the document goes to a `SpooledPayload` (memory up to OFFLOAD_UPLOAD_SPOOL_MEMORY_BYTES,
then a temporary file) that knows its size and SHA-256 when the body ends. The caller inspects
it from there and hands it to the job store, and always calls `form.document.cleanup()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from offload_core.payloads.spool import SpooledPayload, SpoolFull, SpoolLimitExceeded, disk_budget
from offload_core.settings import Settings
from offload_core.web.problems import ProblemError

FORM_OVERHEAD_BYTES = 320 * 1024  # room for the other form fields (a pipeline's steps) and boundaries
UPLOAD_DEADLINE_SECONDS = 120
TEXT_FIELDS = ("languages", "priority", "callback_url", "run_at", "delay_seconds", "pipeline")
MAX_FIELDS = 8
MAX_FIELD_BYTES = 16 * 1024  # one text field, and one part's headers
# A pipeline's steps carry prompts: its field may be larger (spec.py bounds each prompt).
FIELD_BYTES = {"pipeline": 256 * 1024}
SPOOL_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class OcrForm:
    document: SpooledPayload  # sealed: .size, .sha256, .path, .open(), .read_all(); the caller cleans up
    filename: str
    declared_type: str
    languages: str | None
    priority: str | None
    callback_url: str | None
    run_at: str | None = None
    delay_seconds: str | None = None
    pipeline: str | None = None  # POST /v1/pipelines: the steps, as JSON


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, "Upload too large", f"the upload exceeds the limit of {limit} bytes ({limit // (1024 * 1024)} MiB)")


def _malformed(why: str) -> ProblemError:
    return ProblemError(400, "Malformed upload", f"the multipart body could not be read: {why}")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_bytes: int = 0
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    text: bytearray | None = None  # a text field's value; None for the file


class _OcrFormParser:
    """python-multipart's push parser with callbacks that keep only what an OCR form needs.

    The callbacks run synchronously inside `parser.write`; the document's bytes they see are
    queued and written to the spool after each write returns (`awrite`: off the event loop
    once the spool is a file), as Starlette's own parser does with its upload files.
    """

    def __init__(self, spool: SpooledPayload) -> None:
        self.spool = spool
        self.fields: dict[str, str] = {}
        self.filename = ""
        self.declared_type = ""
        self.has_file = False
        self.file_complete = False
        self.ended = False
        self.pending: list[bytes] = []
        self._part = _Part()
        self._header_name = b""
        self._header_value = b""
        self._field_count = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_end": self.on_end}

    def on_part_begin(self) -> None:
        self._part = _Part()

    def _count_header(self, n: int) -> None:
        self._part.header_bytes += n
        if self._part.header_bytes > MAX_FIELD_BYTES:
            raise _malformed(f"a part's headers exceed {MAX_FIELD_BYTES // 1024} KiB")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._part.headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        part = self._part
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise _malformed('every part needs a Content-Disposition header with a "name"')
        part.name = _decode(options[b"name"])
        if b"filename" in options:
            if part.name != "file":
                raise ProblemError(422, "Invalid field",
                                   f"the form field '{part.name[:64]}' must be text, not a file; attach the document "
                                   "in the field 'file'")
            if self.has_file:
                raise _malformed("more than one file; attach one document in the field 'file'")
            self.has_file = True
            self.filename = _decode(options[b"filename"])
            self.declared_type = _decode(part.headers.get(b"content-type", b""))
        else:
            self._field_count += 1
            if self._field_count > MAX_FIELDS:
                raise _malformed(f"more than {MAX_FIELDS} form fields")
            part.text = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        text = self._part.text
        if text is None:
            self.pending.append(data[start:end])
        elif len(text) + (end - start) > (limit := FIELD_BYTES.get(self._part.name, MAX_FIELD_BYTES)):
            raise _malformed(f"the form field '{self._part.name[:64]}' is larger than {limit // 1024} KiB")
        else:
            text += data[start:end]

    def on_part_end(self) -> None:
        if self._part.text is None:
            self.file_complete = True
        else:
            self.fields[self._part.name] = _decode(bytes(self._part.text))

    def on_end(self) -> None:
        self.ended = True


async def _limited(request: Request, limit: int, max_bytes: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(max_bytes)
        yield chunk


@dataclass(frozen=True)
class UploadForm:
    document: SpooledPayload  # sealed; the caller cleans up
    filename: str
    declared_type: str
    fields: dict[str, str | None]  # the text fields asked for, stripped; None when absent or empty


async def read_ocr_form(request: Request, settings: Settings) -> OcrForm:
    form = await read_upload_form(request, settings, max_bytes=settings.ocr_max_upload_bytes, text_fields=TEXT_FIELDS)
    return OcrForm(document=form.document, filename=form.filename, declared_type=form.declared_type, **form.fields)


async def read_upload_form(request: Request, settings: Settings, *, max_bytes: int,
                           text_fields: tuple[str, ...]) -> UploadForm:
    """A multipart upload with one file (field `file`) of at most `max_bytes`, spooled as it
    arrives, and the named text fields."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise ProblemError(415, "Unsupported media type",
                           "send the upload as multipart/form-data with the file in the 'file' field")
    limit = max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(max_bytes)
    boundary = parse_options_header(ctype)[1].get(b"boundary")
    if not boundary:
        raise _malformed("the Content-Type header names no boundary")
    spool = SpooledPayload(limit=max_bytes, memory_bytes=settings.upload_spool_memory_bytes,
                           budget=disk_budget(settings.upload_spool_max_disk_bytes),
                           directory=settings.upload_spool_dir or None)
    try:
        form = _OcrFormParser(spool)
        parser = MultipartParser(boundary, form.callbacks())
        async with asyncio.timeout(UPLOAD_DEADLINE_SECONDS):
            async for chunk in _limited(request, limit, max_bytes):
                parser.write(chunk)
                for piece in form.pending:
                    await spool.awrite(piece)
                form.pending.clear()
            parser.finalize()
        if not form.has_file:
            raise ProblemError(422, "Missing file", "attach the file in the multipart field 'file'")
        if not (form.file_complete and form.ended):
            raise _malformed("the body ended before the closing boundary")
        if spool.size == 0:
            raise ProblemError(422, "Empty file", "the uploaded file is empty (0 bytes)")
        fields = {name: (form.fields.get(name) or "").strip() or None for name in text_fields}
        return UploadForm(document=spool.seal(), filename=(form.filename or "upload")[:255],
                          declared_type=form.declared_type, fields=fields)
    except BaseException as exc:
        spool.cleanup()
        if isinstance(exc, TimeoutError):
            raise ProblemError(408, "Upload too slow",
                               f"the upload did not complete within {UPLOAD_DEADLINE_SECONDS} s") from None
        if isinstance(exc, SpoolLimitExceeded):
            raise _too_large(max_bytes) from None
        if isinstance(exc, SpoolFull):
            raise ProblemError(503, "Too many uploads at once",
                               "the gateway is receiving more uploads than it has room to hold; "
                               f"send the file again in {SPOOL_RETRY_AFTER_SECONDS} s",
                               headers={"Retry-After": str(SPOOL_RETRY_AFTER_SECONDS)}) from None
        if isinstance(exc, FormParserError):
            raise _malformed(str(exc) or type(exc).__name__) from None
        raise
