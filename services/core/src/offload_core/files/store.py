"""The file store (asyncio, the gateway's): create, read, list, stream, delete, expire.

Content in Redis is written in chunks (`APPEND`, under a short TTL until the record exists, so
an upload cut off half-way leaves nothing for long), then the record is made by one script that
checks the tenant's file count and byte quota. Content in S3 is put first and deleted again if
the record is refused. Redis errors surface as `StoreUnavailable` (503 + Retry-After).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio
import redis.asyncio as aioredis
from prometheus_client import Counter

from offload_core.files.record import FIELDS, FileRecord, fields_json
from offload_core.jobs import keys
from offload_core.jobs.record import as_text
from offload_core.jobs.scripts import LuaScript
from offload_core.jobs.store import unavailable_as_error
from offload_core.payloads.errors import PayloadUnavailable
from offload_core.payloads.ref import PayloadRef
from offload_core.payloads.s3 import S3PayloadStore, goes_to_s3
from offload_core.settings import Settings

CREATE = LuaScript.load("file_create", Path(__file__).parent / "scripts")
DELETE = LuaScript.load("file_delete", Path(__file__).parent / "scripts")

CHUNK_BYTES = 1024 * 1024  # one APPEND or GETRANGE
UPLOAD_TTL_SECONDS = 3600  # content of an upload whose record was never made
EXPIRY_GRACE_SECONDS = 24 * 3600  # the keys' TTL outlives the expiry sweep by this
EXPIRE_BATCH = 100  # files the expiry sweep deletes per round trip
MAX_LIST = 10_000

FILES_CREATED = Counter("offload_files_created_total", "Files created (uploads and batch outputs)", ["purpose"])
FILE_BYTES_CREATED = Counter("offload_file_bytes_created_total", "Bytes of the files created", ["purpose"])
FILES_DELETED = Counter("offload_files_deleted_total", "Files deleted, by their tenant or at their expiry", ["why"])

_ID = re.compile(r"^file-[0-9a-f]{32}$")


class Upload(Protocol):
    """Sealed upload bytes (offload_core.payloads.spool.SpooledPayload is one)."""

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str: ...

    def open(self) -> BinaryIO: ...


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


class FileStore:
    def __init__(self, redis: aioredis.Redis, settings: Settings, payloads: S3PayloadStore | None = None) -> None:
        self.redis, self.settings, self.payloads = redis, settings, payloads
        self._create = CREATE.register(redis)
        self._delete = DELETE.register(redis)

    # -- writes ------------------------------------------------------------------------------

    async def create_upload(self, tenant: str, filename: str, purpose: str, upload: Upload) -> tuple[str, FileRecord]:
        """Store an upload: ('created' | 'too_many' | 'bytes_exceeded', the record)."""
        file_id = new_file_id()
        content_ref = ""
        if self.payloads is not None and goes_to_s3(self.settings, upload.size):
            ref = await self.payloads.put(f"{self.settings.s3_prefix}files/{file_id}", upload)
            content_ref = ref.to_json()
        else:
            async with unavailable_as_error():
                with upload.open() as body:
                    while chunk := await anyio.to_thread.run_sync(body.read, CHUNK_BYTES):
                        await self._append(file_id, chunk)
        record = self._record(file_id, tenant, filename, purpose, upload.size, content_ref)
        status = await self._commit(record, enforce=True)
        if status != "created":
            await self._drop_content(record)
        return status, record

    async def create_from_chunks(self, tenant: str, filename: str, purpose: str, chunks: AsyncIterator[bytes], *,
                                 file_id: str | None = None) -> FileRecord | None:
        """A file written by Offload (a batch's output), in Redis, counted in the tenant's byte
        quota but never refused. None when `chunks` gave no bytes. With `file_id` (chosen and
        recorded by the caller first, so a crash cannot leave two), a file of that id that exists
        already is returned as it is, and a half-written one is written again."""
        if file_id is not None:
            existing = await self.get(file_id, tenant)
            if existing is not None:
                return existing
            async with unavailable_as_error():
                await self.redis.delete(keys.file_content(file_id))
        file_id, size = file_id or new_file_id(), 0
        async for chunk in chunks:
            if chunk:
                await self._append(file_id, chunk)
                size += len(chunk)
        if not size:
            return None
        record = self._record(file_id, tenant, filename, purpose, size, "")
        await self._commit(record, enforce=False)
        return record

    async def _append(self, file_id: str, chunk: bytes) -> None:
        async with unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            pipe.append(keys.file_content(file_id), chunk)
            pipe.expire(keys.file_content(file_id), UPLOAD_TTL_SECONDS)
            await pipe.execute()

    def _record(self, file_id: str, tenant: str, filename: str, purpose: str, size: int, ref: str) -> FileRecord:
        now = time.time()
        return FileRecord(id=file_id, tenant=tenant, filename=filename, purpose=purpose, bytes=size, created_at=now,
                          expires_at=now + self.settings.file_retention_seconds, content_ref=ref)

    async def _commit(self, record: FileRecord, *, enforce: bool) -> str:
        s = self.settings
        async with unavailable_as_error():
            status = await self._create(
                file_key=keys.file(record.id), content_key=keys.file_content(record.id),
                tenant_files_key=keys.tenant_files(record.tenant), usage_key=keys.tenant_usage(record.tenant),
                expiry_key=keys.FILES_EXPIRY, file_id=record.id, fields=fields_json(record), size=record.bytes,
                max_files=s.file_max_per_tenant, max_bytes=s.max_queued_bytes_per_tenant,
                enforce="1" if enforce else "0", now=repr(record.created_at), expires_at=repr(record.expires_at),
                ttl=int(record.expires_at - record.created_at) + EXPIRY_GRACE_SECONDS)
        status = as_text(status)
        if status == "created":
            FILES_CREATED.labels(record.purpose).inc()
            FILE_BYTES_CREATED.labels(record.purpose).inc(record.bytes)
        return status

    async def delete(self, file_id: str, tenant: str) -> tuple[str, str]:
        """('deleted' | 'in_use' | 'missing', the batch that reads it when in use)."""
        if not _ID.match(file_id):
            return "missing", ""
        out = await self._delete_script(file_id, tenant)
        status = as_text(out[0])
        if status == "deleted":
            FILES_DELETED.labels("asked").inc()
            await self._drop_ref(as_text(out[1]))
        return status, as_text(out[1]) if len(out) > 1 else ""

    async def expire_due(self, now: float | None = None) -> int:
        """Delete the files whose time is up (the gateway's maintenance); returns how many."""
        now = time.time() if now is None else now
        async with unavailable_as_error():
            due = await self.redis.zrangebyscore(keys.FILES_EXPIRY, "-inf", repr(now), start=0, num=EXPIRE_BATCH)
        deleted = 0
        for file_id in map(as_text, due):
            out = await self._delete_script(file_id, "", now)
            if as_text(out[0]) == "deleted":
                deleted += 1
                FILES_DELETED.labels("expired").inc()
                await self._drop_ref(as_text(out[1]))
            elif as_text(out[0]) == "in_use":  # a batch still reads it: looked at again in an hour
                async with unavailable_as_error():
                    await self.redis.zadd(keys.FILES_EXPIRY, {file_id: now + 3600}, xx=True)
        return deleted

    async def _delete_script(self, file_id: str, tenant: str, now: float | None = None) -> list:
        record_tenant = tenant or as_text(await self.redis.hget(keys.file(file_id), "tenant") or b"")
        async with unavailable_as_error():
            return await self._delete(
                file_key=keys.file(file_id), content_key=keys.file_content(file_id),
                tenant_files_key=keys.tenant_files(record_tenant), usage_key=keys.tenant_usage(record_tenant),
                expiry_key=keys.FILES_EXPIRY, file_id=file_id, tenant=tenant,
                now=repr(time.time() if now is None else now))

    async def _drop_content(self, record: FileRecord) -> None:
        if record.content_ref:
            await self._drop_ref(record.content_ref)
        else:
            async with unavailable_as_error():
                await self.redis.delete(keys.file_content(record.id))

    async def _drop_ref(self, content_ref: str) -> None:
        if content_ref and self.payloads is not None:
            try:
                await self.payloads.adelete(PayloadRef.from_json(content_ref))
            except (PayloadUnavailable, ValueError):
                pass  # the bucket's lifecycle rule removes it later

    # -- reads -------------------------------------------------------------------------------

    async def get(self, file_id: str, tenant: str | None) -> FileRecord | None:
        """The file, or None when there is none or it is another tenant's."""
        if not _ID.match(file_id):
            return None
        async with unavailable_as_error():
            record = FileRecord.from_values(await self.redis.hmget(keys.file(file_id), FIELDS))
        if record is None or (tenant is not None and record.tenant != tenant):
            return None
        return record

    async def list(self, tenant: str, *, purpose: str | None, after: str | None, limit: int,
                   newest_first: bool = True) -> tuple[list[FileRecord], bool]:
        """The tenant's files after the file `after` (OpenAI's cursor), and whether more follow."""
        index = keys.tenant_files(tenant)
        async with unavailable_as_error():
            start = 0
            if after:
                rank = await (self.redis.zrevrank(index, after) if newest_first else self.redis.zrank(index, after))
                if rank is None:
                    raise ValueError(f"after names no file of yours: {after}")
                start = rank + 1
            found: list[FileRecord] = []
            scanned = 0
            while len(found) <= limit and scanned < MAX_LIST:
                page = await (self.redis.zrevrange(index, start, start + limit) if newest_first
                              else self.redis.zrange(index, start, start + limit))
                if not page:
                    break
                pipe = self.redis.pipeline(transaction=False)
                for member in page:
                    pipe.hmget(keys.file(as_text(member)), FIELDS)
                for values in await pipe.execute():
                    record = FileRecord.from_values(values)
                    if record is not None and (purpose is None or record.purpose == purpose):
                        found.append(record)
                start += len(page)
                scanned += len(page)
        return found[:limit], len(found) > limit

    async def read_range(self, record: FileRecord, start: int, length: int) -> bytes:
        """Up to `length` bytes from `start` (fewer at the end of the file)."""
        ref = record.ref
        if ref is not None and self.payloads is not None:
            return await self.payloads.aget_range(ref, start, length)
        if length <= 0:
            return b""
        async with unavailable_as_error():
            return await self.redis.getrange(keys.file_content(record.id), start, start + length - 1)

    async def stream(self, record: FileRecord) -> AsyncIterator[bytes]:
        """The file's bytes in chunks, each read as the caller asks for it."""
        ref = record.ref
        if ref is not None and self.payloads is not None:
            async for chunk in self.payloads.astream(ref):
                yield chunk
            return
        position = 0
        while position < record.bytes:
            chunk = await self.read_range(record, position, CHUNK_BYTES)
            if not chunk:
                return  # deleted while it was read: the client sees a short body
            position += len(chunk)
            yield chunk
