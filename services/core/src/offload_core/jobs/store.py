"""The job store as the APIs use it (asyncio): submit, cancel, requeue, read, list, follow.

Every write is one Lua script from `offload_core.jobs.scripts`; reads are plain commands. Redis errors
surface as `StoreUnavailable`, which the APIs turn into 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from offload_core.errors import StoreFull, StoreUnavailable
from offload_core.jobs import keys, scripts
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.record import Job, as_text
from offload_core.jobs.script_batch import ScriptBatch
from offload_core.observability.tracing import current_trace_id, publish_span
from offload_core.queue.messages import build_task_message
from offload_core.queue.routing import ALL_QUEUES, TASK_NAMES, queue_name, queues_for
from offload_core.settings import Settings
from offload_core.types import JobState, JobType, Priority


@dataclass(frozen=True)
class SubmitOutcome:
    status: str  # created | existing | conflict | rate_limited | quota_exceeded
    job_id: str
    retry_after: int = 0
    job: Job | None = None  # the new record, when created


@dataclass(frozen=True)
class NewJob:
    type: JobType
    tenant: str
    priority: Priority
    payload: bytes
    params: dict[str, Any]
    idempotency_key: str | None = None
    callback_url: str | None = None
    trace_id: str | None = None  # the submitting request's trace (offload_core.observability.tracing)

    def digest(self) -> str:
        """What makes two submissions 'the same body' for Idempotency-Key."""
        h = hashlib.sha256()
        for part in (self.type.value, self.priority.value, self.callback_url or "",
                     json.dumps(self.params, sort_keys=True)):
            h.update(part.encode())
            h.update(b"\0")
        h.update(self.payload)
        return h.hexdigest()


def connect(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url,
        **settings.redis_tls_options(),
        socket_connect_timeout=2,
        # No socket timeout (redis-py 8 defaults to 5 s, so it must be said): redis-py would wrap
        # every send and read in its own asyncio.wait_for (~14 % of the gateway's CPU under load).
        # Each store call has one deadline instead (_unavailable_as_error).
        socket_timeout=None,
        health_check_interval=15,
        retry_on_timeout=False,
        **kwargs,
    )


def message_app() -> Celery:
    """A Celery app used only to build task messages (never connects)."""
    return Celery("offload-messages", set_as_current=False)


class JobStore:
    def __init__(self, redis: aioredis.Redis, settings: Settings, celery_app: Celery | None = None) -> None:
        self.redis = redis
        self.settings = settings
        self.app = celery_app or message_app()
        # Submits made while one is on its way to Redis share the next round trip (group commit).
        self._submit = ScriptBatch(redis, scripts.SUBMIT.source, timeout_seconds=STORE_TIMEOUT_SECONDS)
        self._cancel = scripts.CANCEL.register(redis)
        self._requeue = scripts.REQUEUE.register(redis)

    # -- writes -----------------------------------------------------------------------------

    async def submit(self, new: NewJob) -> SubmitOutcome:
        s = self.settings
        now = time.time()
        job_id = str(uuid.uuid4())
        job = Job(
            id=job_id, type=new.type, tenant=new.tenant, priority=new.priority, state=JobState.QUEUED,
            max_attempts=s.max_attempts(new.type), created_at=now, queued_at=now, params=new.params,
            idempotency_key=new.idempotency_key, callback_url=new.callback_url, trace_id=new.trace_id,
        )
        queue = queue_name(new.type, new.priority)
        minute = int(now // 60)
        fields = json.dumps([x for kv in job.to_hash().items() for x in kv], separators=(",", ":"))
        idem = new.idempotency_key or ""
        # The body's digest only matters to a key's later replays; hashing every payload (up to
        # an OCR upload's megabytes) when no key was sent would be pure cost.
        digest = new.digest() if idem else ""
        # publish_span yields the trace context the message carries: the worker's run continues the trace.
        with publish_span(TASK_NAMES[new.type], queue, job_id) as trace_headers:
            message = build_task_message(self.app, job_id=job_id, job_type=new.type, queue=queue,
                                         tenant=new.tenant, headers=trace_headers)
            async with _unavailable_as_error(deadline=False):  # the batch keeps the deadline
                submit_keys, submit_args = scripts.SUBMIT.layout(dict(
                    idem_key=keys.idempotency(new.tenant, idem), rate_key=keys.tenant_rate(new.tenant, minute),
                    active_key=keys.tenant_active(new.tenant), job_key=keys.job(job_id),
                    payload_key=keys.payload(job_id), events_key=keys.events(job_id),
                    tenant_jobs_key=keys.tenant_jobs(new.tenant), queue_key=queue, counters_key=keys.COUNTERS,
                    pending_key=keys.PENDING,
                    job_id=job_id, digest=digest, idem_ttl=s.idempotency_ttl_seconds,
                    rate_limit=s.rate_limit_per_minute, max_active=s.max_queued_per_tenant, now=repr(now),
                    payload=new.payload, message=message, events_maxlen=s.events_maxlen,
                    retention=s.retention_seconds, has_idem="1" if idem else "0", rate_ttl=120, fields=fields,
                ))
                status, ident = await self._submit(keys=submit_keys, args=submit_args)
        status = as_text(status)
        if status == "created":
            job_metrics.submitted(new.type, new.priority)
        retry_after = 0
        if status == "rate_limited":
            retry_after = max(1, int(60 - now % 60) + 1)
        elif status == "quota_exceeded":
            retry_after = 30
        return SubmitOutcome(status=status, job_id=as_text(ident), retry_after=retry_after,
                             job=job if status == "created" else None)

    async def cancel(self, job_id: str, tenant: str) -> tuple[str, str | None]:
        s = self.settings
        if not _looks_like_id(job_id):
            return "missing", None
        async with _unavailable_as_error():
            out = await self._cancel(
                job_key=keys.job(job_id), events_key=keys.events(job_id), payload_key=keys.payload(job_id),
                active_key=keys.tenant_active(tenant), counters_key=keys.COUNTERS, pending_key=keys.PENDING,
                tenant=tenant, now=repr(time.time()), events_maxlen=s.events_maxlen, retention=s.retention_seconds,
            )
        return as_text(out[0]), (as_text(out[1]) if len(out) > 1 else None)

    async def requeue(self, job_id: str, tenant: str | None) -> tuple[str, str | None]:
        """Put a failed or dead job back on its queue. `tenant=None` acts for an admin."""
        s = self.settings
        job = await self.get(job_id, tenant)
        if job is None:
            return "missing", None
        queue = queue_name(job.type, job.priority)
        with publish_span(TASK_NAMES[job.type], queue, job_id) as trace_headers:
            message = build_task_message(self.app, job_id=job_id, job_type=job.type, queue=queue,
                                         tenant=job.tenant, headers=trace_headers)
            async with _unavailable_as_error():
                out = await self._requeue(
                    job_key=keys.job(job_id), events_key=keys.events(job_id), payload_key=keys.payload(job_id),
                    active_key=keys.tenant_active(job.tenant), dead_key=keys.DEAD, queue_key=queue,
                    counters_key=keys.COUNTERS, pending_key=keys.PENDING,
                    tenant=tenant or "", now=repr(time.time()), message=message, events_maxlen=s.events_maxlen,
                    max_active=s.max_queued_per_tenant, retention=s.retention_seconds,
                    trace_id=current_trace_id() or "",
                )
        return as_text(out[0]), (as_text(out[1]) if len(out) > 1 else None)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, job_id: str, tenant: str | None) -> Job | None:
        """The job, or None when it does not exist or belongs to another tenant."""
        if not _looks_like_id(job_id):
            return None
        async with _unavailable_as_error():
            raw = await self.redis.hgetall(keys.job(job_id))
        if not raw:
            return None
        job = Job.from_hash(raw)
        if tenant is not None and job.tenant != tenant:
            return None
        return job

    async def result(self, job_id: str) -> bytes | None:
        async with _unavailable_as_error():
            return await self.redis.get(keys.result(job_id))

    async def list_jobs(
        self, tenant: str, *, state: JobState | None, job_type: JobType | None,
        cursor: str | None, limit: int,
    ) -> tuple[list[Job], str | None]:
        """The tenant's jobs, newest first, and the cursor of the next page (None at the end).

        The cursor is "<created_at>|<id>" of the last job looked at, so jobs created in the
        same instant are neither skipped nor repeated. Filters apply while scanning the index;
        one page scans at most 10x `limit` entries, so a page may hold fewer than `limit` jobs
        and still have a next cursor.
        """
        index = keys.tenant_jobs(tenant)
        after_score, after_id = _parse_cursor(cursor)
        upper = repr(after_score) if after_score is not None else "+inf"
        found: list[Job] = []
        scanned = 0
        async with _unavailable_as_error():
            while True:
                batch = await self.redis.zrevrangebyscore(index, upper, "-inf", start=0, num=limit + 1, withscores=True)
                batch = [(as_text(m), sc) for m, sc in batch
                         if not (after_score is not None and sc == after_score and after_id is not None and as_text(m) >= after_id)]
                if not batch:
                    return found, None
                pipe = self.redis.pipeline(transaction=False)
                for member, _ in batch:
                    pipe.hgetall(keys.job(member))
                for (member, score), raw in zip(batch, await pipe.execute()):
                    scanned += 1
                    after_score, after_id = score, member
                    if raw:  # an expired record's index entry is trimmed on a later submit
                        job = Job.from_hash(raw)
                        if (state is None or job.state == state) and (job_type is None or job.type == job_type):
                            found.append(job)
                    if len(found) == limit or scanned >= limit * 10:
                        return found, f"{after_score!r}|{after_id}"
                upper = repr(after_score)

    async def events(self, job_id: str, after: str = "0-0", count: int = 500) -> list[tuple[str, str, str]]:
        """Stored events after the given stream id: (id, kind, data json)."""
        async with _unavailable_as_error():
            rows = await self.redis.xrange(keys.events(job_id), min=f"({after}" if after != "0-0" else "-", count=count)
        return [(as_text(i), as_text(f[b"kind"]), as_text(f[b"data"])) for i, f in rows]

    async def follow_events(self, job_id: str, after: str, block_ms: int) -> list[tuple[str, str, str]]:
        """Wait up to `block_ms` for events after `after` (stream id)."""
        async with _unavailable_as_error():
            reply = await self.redis.xread({keys.events(job_id): after}, block=block_ms, count=500)
        out: list[tuple[str, str, str]] = []
        for _, rows in reply or []:
            out.extend((as_text(i), as_text(f[b"kind"]), as_text(f[b"data"])) for i, f in rows)
        return out

    async def queue_stats(self) -> dict[str, Any]:
        """Depth and age of the oldest message per queue, plus running and dead counts."""
        now = time.time()
        async with _unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            for q in ALL_QUEUES:
                pipe.llen(q)
                pipe.lindex(q, -1)  # LPUSH + BRPOP: the oldest message sits at the right end
            pipe.zcard(keys.RUNNING)
            pipe.zcard(keys.DEAD)
            pipe.zrange(keys.RUNNING, 0, -1)
            pipe.hgetall(keys.COUNTERS)
            replies = await pipe.execute()
            oldest_ids = [_message_job_id(replies[2 * i + 1]) for i in range(len(ALL_QUEUES))]
            pipe = self.redis.pipeline(transaction=False)
            for jid in oldest_ids:
                pipe.hget(keys.job(jid), "queued_at") if jid else pipe.echo("")
            queued_ats = await pipe.execute()
            running_ids = [as_text(x) for x in replies[2 * len(ALL_QUEUES) + 2]]
            pipe = self.redis.pipeline(transaction=False)
            for jid in running_ids:
                pipe.hget(keys.job(jid), "type")
            running_types = [as_text(t) if t else None for t in await pipe.execute()]
        queues: dict[str, dict[str, Any]] = {}
        for i, q in enumerate(ALL_QUEUES):
            qa = queued_ats[i]
            queues[q] = {
                "depth": int(replies[2 * i]),
                "oldest_age_seconds": round(max(0.0, now - float(qa)), 3) if qa else None,
            }
        counters = {as_text(k): int(v) for k, v in replies[-1].items()}
        return {
            "queues": queues,
            "running": int(replies[2 * len(ALL_QUEUES)]),
            "running_by_type": {t.value: running_types.count(t.value) for t in JobType},
            "dead": int(replies[2 * len(ALL_QUEUES) + 1]),
            "totals": counters,
        }

    async def work(self, job_type: JobType) -> dict[str, int]:
        """Queued and running jobs of one type: what KEDA scales its worker on (GET
        /scaling/{type}). Three LLENs, then one read of the type per running job: the cost
        follows the running jobs (at most the workers' slots), not the number of jobs stored."""
        async with _unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            for q in queues_for(job_type):
                pipe.llen(q)
            pipe.zrange(keys.RUNNING, 0, -1)
            *depths, running_ids = await pipe.execute()
            pipe = self.redis.pipeline(transaction=False)
            for jid in running_ids:
                pipe.hget(keys.job(as_text(jid)), "type")
            types = await pipe.execute() if running_ids else []
        running = sum(1 for t in types if t is not None and as_text(t) == job_type.value)
        return {"queued": sum(int(d) for d in depths), "running": running}

    async def dead_jobs(self, limit: int = 100) -> list[str]:
        async with _unavailable_as_error():
            return [as_text(x) for x in await self.redis.zrevrange(keys.DEAD, 0, limit - 1)]

    async def ping(self) -> bool:
        try:
            async with _unavailable_as_error():
                return bool(await self.redis.ping())
        except (StoreUnavailable, RedisError, OSError):
            return False


STORE_TIMEOUT_SECONDS = 5.0


class _unavailable_as_error:
    """Turn Redis failures, and a Redis that does not answer within STORE_TIMEOUT_SECONDS,
    into StoreUnavailable (-> 503 + Retry-After): one deadline for the whole store call. A Redis
    at its maxmemory refuses writes (OOM): StoreFull, also a 503.

    `deadline=False` for a call that has one already (a ScriptBatch): a timer costs a submit
    ~2% of its CPU, for nothing when there are two."""

    def __init__(self, *, deadline: bool = True) -> None:
        self._deadline = asyncio.timeout(STORE_TIMEOUT_SECONDS) if deadline else None

    async def __aenter__(self) -> None:
        if self._deadline is not None:
            await self._deadline.__aenter__()

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        try:
            if self._deadline is not None:
                await self._deadline.__aexit__(exc_type, exc, tb)
        except TimeoutError as timeout:
            raise StoreUnavailable(f"Redis did not answer within {STORE_TIMEOUT_SECONDS:g} s") from timeout
        if exc is not None and isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
            raise StoreUnavailable(str(exc)) from exc
        if isinstance(exc, OutOfMemoryError):
            raise StoreFull(str(exc)) from exc
        return False


def _parse_cursor(cursor: str | None) -> tuple[float | None, str | None]:
    if not cursor:
        return None, None
    score, _, member = cursor.partition("|")
    try:
        return float(score), (member or None)
    except ValueError:
        raise ValueError("cursor is not one this API gave out") from None


def _message_job_id(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        return json.loads(raw)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None


def _looks_like_id(job_id: str) -> bool:
    try:
        uuid.UUID(job_id)
    except (ValueError, AttributeError):
        return False
    return True

