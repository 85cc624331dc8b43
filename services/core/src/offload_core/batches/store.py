"""The batch store (asyncio, the gateway's): create (after validating the input file), read,
list, cancel. The coordinator (coordinator.py) does everything that happens later."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offload_core.batches.lines import ENDPOINTS
from offload_core.batches.record import COMPLETION_WINDOWS, FIELDS, BatchRecord
from offload_core.batches.validate import Validation, validate_file
from offload_core.files.store import EXPIRY_GRACE_SECONDS, FileStore
from offload_core.jobs import keys
from offload_core.jobs.record import as_text
from offload_core.jobs.scripts import LuaScript
from offload_core.jobs.store import JobStore, unavailable_as_error
from offload_core.types import Priority

_SCRIPTS = Path(__file__).parent / "scripts"
CREATE = LuaScript.load("batch_create", _SCRIPTS)
CANCEL = LuaScript.load("batch_cancel", _SCRIPTS)
LINE_DONE = LuaScript.load("batch_line_done", _SCRIPTS)
END = LuaScript.load("batch_end", _SCRIPTS)

MAX_METADATA_PAIRS = 16
_ID = re.compile(r"^batch_[0-9a-f]{32}$")


class BatchRefused(ValueError):
    """A batch that cannot be created: `status` is the HTTP status, `title` and the message say why."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


@dataclass(frozen=True)
class BatchRequest:
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str]


def parse_metadata(metadata: dict[str, Any] | None) -> tuple[dict[str, str], Priority, str]:
    """OpenAI's metadata (at most 16 string pairs; keys up to 64 characters, values up to 512),
    and Offload's extras read from it: `priority` (default low) and `callback_url`."""
    metadata = metadata or {}
    if len(metadata) > MAX_METADATA_PAIRS:
        raise BatchRefused(422, "Invalid metadata", f"metadata holds at most {MAX_METADATA_PAIRS} pairs")
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 64 or not isinstance(value, str) or len(value) > 512:
            raise BatchRefused(422, "Invalid metadata", "metadata keys are strings of 1 to 64 characters and values "
                                                        "strings of at most 512")
    try:
        priority = Priority(metadata.get("priority", Priority.LOW.value))
    except ValueError:
        raise BatchRefused(422, "Invalid metadata", "metadata.priority must be one of "
                                                    f"{', '.join(p.value for p in Priority)}") from None
    return dict(metadata), priority, metadata.get("callback_url", "")


class BatchStore:
    def __init__(self, jobs: JobStore, files: FileStore) -> None:
        self.jobs, self.files, self.settings = jobs, files, jobs.settings
        self.redis = jobs.redis
        self._create = CREATE.register(self.redis)
        self._cancel = CANCEL.register(self.redis)

    async def create(self, tenant: str, request: BatchRequest, *, callback_url: str = "") -> BatchRecord:
        """Validate the input file whole, then create the batch; `BatchRefused` otherwise.
        `callback_url` is metadata's, already checked by the caller (the SSRF guard, a secret)."""
        s = self.settings
        if request.endpoint not in ENDPOINTS:
            raise BatchRefused(422, "Unsupported endpoint", f"endpoint must be one of {', '.join(ENDPOINTS)}")
        window = COMPLETION_WINDOWS.get(request.completion_window)
        if window is None:
            raise BatchRefused(422, "Unsupported completion_window",
                               f"completion_window must be one of {', '.join(COMPLETION_WINDOWS)}")
        metadata, priority, _ = parse_metadata(request.metadata)
        record = await self.files.get(request.input_file_id, tenant)
        if record is None:
            raise BatchRefused(404, "Input file not found", f"no file {request.input_file_id} for your tenant")
        if record.purpose != "batch":
            raise BatchRefused(422, "Wrong file purpose", f"the input file's purpose is {record.purpose!r}; upload "
                                                          "it with purpose=batch")
        checked: Validation = await validate_file(self.files, record, request.endpoint, s, tenant)
        if not checked.ok:
            lines = "; ".join(f"line {n}: {why}" for n, why in checked.errors)
            raise BatchRefused(400, "Invalid batch file", f"the input file was refused, nothing was queued: {lines}",
                               errors=[{"line": n, "message": why} for n, why in checked.errors])
        now = time.time()
        batch = BatchRecord(id=f"batch_{uuid.uuid4().hex}", tenant=tenant, endpoint=request.endpoint,
                            input_file_id=record.id, completion_window=request.completion_window,
                            status="in_progress", created_at=now, expires_at=now + window, metadata=metadata,
                            priority=priority.value, callback_url=callback_url, total=checked.requests,
                            times={"in_progress_at": now})
        # The input file lives as long as the batch may run, and a day more.
        file_expires = max(record.expires_at, batch.expires_at + EXPIRY_GRACE_SECONDS)
        async with unavailable_as_error():
            status = as_text(await self._create(
                batch_key=keys.batch(batch.id), tenant_batches_key=keys.tenant_batches(tenant),
                usage_key=keys.tenant_usage(tenant), batches_key=keys.BATCHES, file_key=keys.file(record.id),
                content_key=keys.file_content(record.id), expiry_key=keys.FILES_EXPIRY, batch_id=batch.id,
                fields=json.dumps(batch.to_hash(), separators=(",", ":")), max_active=s.batch_max_active_per_tenant,
                now=repr(now), tenant=tenant, file_id=record.id, file_expires_at=repr(file_expires),
                file_ttl=int(file_expires - now) + EXPIRY_GRACE_SECONDS))
        if status == "file_missing":
            raise BatchRefused(404, "Input file not found", f"file {record.id} was deleted while it was validated")
        if status == "too_many":
            raise BatchRefused(429, "Too many batches", f"your tenant has {s.batch_max_active_per_tenant} batches "
                               "running; wait for one to end", retry_after=60)
        # Batches that ended longer ago than their records are kept are gone: their ids leave the index.
        cutoff = now - s.file_retention_seconds - COMPLETION_WINDOWS["24h"] - EXPIRY_GRACE_SECONDS
        async with unavailable_as_error():
            await self.redis.zremrangebyscore(keys.tenant_batches(tenant), "-inf", repr(cutoff))
        return batch

    async def get(self, batch_id: str, tenant: str | None) -> BatchRecord | None:
        if not _ID.match(batch_id):
            return None
        async with unavailable_as_error():
            batch = BatchRecord.from_values(await self.redis.hmget(keys.batch(batch_id), FIELDS))
        if batch is None or (tenant is not None and batch.tenant != tenant):
            return None
        return batch

    async def to_api(self, batch: BatchRecord) -> dict[str, Any]:
        """The batch object, with live counts while it runs."""
        if not batch.active:
            return batch.to_api()
        async with unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hlen(keys.batch_output(batch.id))
            pipe.hlen(keys.batch_errors(batch.id))
            completed, failed = await pipe.execute()
        return batch.to_api(completed=completed, failed=failed)

    async def list(self, tenant: str, *, after: str | None, limit: int) -> tuple[list[BatchRecord], bool]:
        """The tenant's batches, newest first, after the batch `after`; and whether more follow."""
        index = keys.tenant_batches(tenant)
        async with unavailable_as_error():
            start = 0
            if after:
                rank = await self.redis.zrevrank(index, after)
                if rank is None:
                    raise ValueError(f"after names no batch of yours: {after}")
                start = rank + 1
            ids = await self.redis.zrevrange(index, start, start + limit)
            pipe = self.redis.pipeline(transaction=False)
            for batch_id in ids:
                pipe.hmget(keys.batch(as_text(batch_id)), FIELDS)
            found = [b for b in (BatchRecord.from_values(v) for v in await pipe.execute()) if b is not None]
        return found[:limit], len(ids) > limit

    async def cancel(self, batch_id: str, tenant: str) -> tuple[str, str]:
        """('cancelling' | 'refused' | 'missing', the status when refused)."""
        if not _ID.match(batch_id):
            return "missing", ""
        async with unavailable_as_error():
            out = await self._cancel(batch_key=keys.batch(batch_id), tenant=tenant, now=repr(time.time()))
        return as_text(out[0]), as_text(out[1]) if len(out) > 1 else ""


async def running_totals(redis: Any) -> tuple[int, int]:
    """(batches not yet ended, their line jobs in flight), for the status service's gauges: one
    SMEMBERS and one SCARD per running batch."""
    ids = [as_text(i) for i in await redis.smembers(keys.BATCHES)]
    if not ids:
        return 0, 0
    pipe = redis.pipeline(transaction=False)
    for batch_id in ids:
        pipe.scard(keys.batch_inflight(batch_id))
    return len(ids), sum(await pipe.execute())
