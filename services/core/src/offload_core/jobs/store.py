"""The job store as the APIs use it (asyncio): submit, cancel, requeue, read, list, replay.

Every write is one Lua script from `offload_core.jobs.scripts`; reads are plain commands. Redis
errors surface as `StoreUnavailable`, which the APIs turn into 503 + Retry-After.
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
from offload_core.jobs.events import replay
from offload_core.jobs.record import RECORD_FIELDS, Job, as_text, from_fields
from offload_core.jobs.script_batch import ScriptBatch
from offload_core.observability.tracing import current_trace_id, publish_span
from offload_core.queue.messages import build_task_message
from offload_core.queue.routing import ALL_QUEUES, TASK_NAMES, queue_name
from offload_core.queue.scaling import scaled_queues, scaled_types
from offload_core.settings import Settings
from offload_core.types import JobState, JobType, Priority


@dataclass(frozen=True)
class SubmitOutcome:
    status: str  # created | existing | conflict | rate_limited | tokens_limited | quota_exceeded | bytes_exceeded
    job_id: str
    retry_after: int = 0
    job: Job | None = None  # the new record, when created


@dataclass(frozen=True)
class NewJob:
    type: JobType
    tenant: str
    priority: Priority
    payload: bytes  # the input, kept in the record; b"" when it lives in object storage (payload_ref)
    params: dict[str, Any]
    idempotency_key: str | None = None
    callback_url: str | None = None
    trace_id: str | None = None  # the submitting request's trace (offload_core.observability.tracing)
    run_at: float | None = None  # when to run it (Unix seconds); None: now
    payload_ref: str | None = None  # the input in object storage (offload_core.payloads)
    payload_size: int | None = None  # its size and SHA-256 (hex), when it is there
    payload_sha256: str | None = None
    job_id: str | None = None  # made by the caller when it needs the id first (an S3 object key)
    tokens: int = 0  # an LLM job's cost under OFFLOAD_LLM_TOKENS_PER_MINUTE (max_tokens + prompt estimate)
    batch_id: str | None = None  # a batch line's batch: its end is collected into the batch's output
    # False for batch lines: the batch was one request, so its lines spend neither the tenant's
    # submissions per minute nor its tokens per minute (the unfinished-job and byte quotas apply).
    counts_rate: bool = True

    @property
    def payload_bytes(self) -> int:
        return self.payload_size if self.payload_ref is not None and self.payload_size is not None else len(self.payload)

    def digest(self) -> str:
        """What makes two submissions 'the same body' for Idempotency-Key."""
        h = hashlib.sha256()
        for part in (self.type.value, self.priority.value, self.callback_url or "",
                     json.dumps(self.params, sort_keys=True)):  # params carry the schedule as asked
            h.update(part.encode())
            h.update(b"\0")
        h.update(self.payload if self.payload_ref is None else (self.payload_sha256 or "").encode())
        return h.hexdigest()


def connect(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url,
        **settings.redis_tls_options(),
        socket_connect_timeout=2,
        # No socket timeout (redis-py 8 defaults to 5 s, so it must be said): redis-py would wrap
        # every send and read in its own asyncio.wait_for (~14 % of the gateway's CPU under load).
        # Each store call has one deadline instead (unavailable_as_error).
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
        self._finish = scripts.FINISH.register(redis)
        self._requeue = scripts.REQUEUE.register(redis)
        self._dead_letters = scripts.DEAD_LETTERS.register(redis)
        self._purge = scripts.PURGE.register(redis)

    # -- writes -----------------------------------------------------------------------------

    async def submit(self, new: NewJob) -> SubmitOutcome:
        s = self.settings
        now = time.time()
        job_id = new.job_id or str(uuid.uuid4())
        queue = queue_name(new.type, new.priority)
        scheduled = new.run_at is not None and new.run_at > now
        job = Job(
            id=job_id, type=new.type, tenant=new.tenant, priority=new.priority,
            state=JobState.SCHEDULED if scheduled else JobState.QUEUED, max_attempts=s.max_attempts(new.type),
            created_at=now, run_at=new.run_at if scheduled else None, queued_at=None if scheduled else now,
            params=new.params, idempotency_key=new.idempotency_key, callback_url=new.callback_url,
            trace_id=new.trace_id, queue=queue, payload_bytes=new.payload_bytes, payload_ref=new.payload_ref,
            batch=new.batch_id,
        )
        minute = int(now // 60)
        fields = json.dumps([x for kv in job.to_hash().items() for x in kv], separators=(",", ":"))
        idem = new.idempotency_key or ""
        # The body's digest only matters to a key's later replays; hashing every payload (up to
        # an OCR upload's megabytes) when no key was sent would be pure cost.
        digest = new.digest() if idem else ""
        tag = str(uuid.uuid4())
        # publish_span yields the trace context the message carries: the worker's run continues the trace.
        with publish_span(TASK_NAMES[new.type], queue, job_id) as trace_headers:
            message = build_task_message(self.app, job_id=job_id, job_type=new.type, queue=queue,
                                         tenant=new.tenant, headers=trace_headers, delivery_tag=tag)
            async with unavailable_as_error(deadline=False):  # the batch keeps the deadline
                submit_keys, submit_args = scripts.SUBMIT.layout(dict(
                    idem_key=keys.idempotency(new.tenant, idem), rate_key=keys.tenant_rate(new.tenant, minute),
                    usage_key=keys.tenant_usage(new.tenant), job_key=keys.job(job_id), queue_key=queue,
                    pending_key=keys.PENDING, delayed_key=keys.DELAYED, tenant_jobs_key=keys.tenant_jobs(new.tenant),
                    tpm_key=keys.tenant_tpm(new.tenant, minute),
                    tpm_limit=s.llm_tokens_per_minute if new.type is JobType.LLM else 0, tpm_cost=new.tokens,
                    job_id=job_id, digest=digest, idem_ttl=s.idempotency_ttl_seconds, has_idem="1" if idem else "0",
                    rate_limit=s.rate_limit_per_minute, rate_ttl=120, max_active=s.max_queued_per_tenant,
                    max_bytes=s.max_queued_bytes_per_tenant, now=repr(now),
                    due=repr(new.run_at) if scheduled else "", fields=fields, payload=new.payload,
                    payload_bytes=new.payload_bytes, message=message, message_tag=tag,
                    counts_rate="1" if new.counts_rate else "0",
                ))
                status, ident = await self._submit(keys=submit_keys, args=submit_args)
        status = as_text(status)
        if status == "created":
            job_metrics.submitted(new.type, new.priority)
        retry_after = 0
        if status in ("rate_limited", "tokens_limited"):
            retry_after = max(1, int(60 - now % 60) + 1)
        elif status in ("quota_exceeded", "bytes_exceeded"):
            retry_after = 30
        return SubmitOutcome(status=status, job_id=as_text(ident), retry_after=retry_after,
                             job=job if status == "created" else None)

    async def cancel(self, job_id: str, tenant: str) -> tuple[str, str | None]:
        """Cancel for `tenant`: ("cancelled" | "cancelling" | "terminal" | "missing", the job's state)."""
        if not looks_like_id(job_id):
            return "missing", None
        job = await self.get(job_id, tenant)
        if job is None:
            return "missing", None
        async with unavailable_as_error():
            out = await self._finish(**keys.finish_keys(job.id, job.type, job.tenant, job.queue), mode="cancel", worker_id="", tenant=tenant,
                                     new_state="cancelled", now=repr(time.time()), result_json="", error_json="null",
                                     retry_at="", message="", message_tag="", tokens="", **self._finish_limits())
        status, state = as_text(out[0]), (as_text(out[1]) if len(out) > 1 else None)
        if status == "ok":
            return "cancelled", state
        return status, state

    async def requeue(self, job_id: str, tenant: str | None) -> tuple[str, str | None]:
        """Put a failed or dead job back on its queue. `tenant=None` acts for an admin."""
        s = self.settings
        job = await self.get(job_id, tenant)
        if job is None:
            return "missing", None
        tag = str(uuid.uuid4())
        with publish_span(TASK_NAMES[job.type], job.queue, job_id) as trace_headers:
            message = build_task_message(self.app, job_id=job_id, job_type=job.type, queue=job.queue,
                                         tenant=job.tenant, headers=trace_headers, delivery_tag=tag)
            async with unavailable_as_error():
                out = await self._requeue(
                    job_key=keys.job(job_id), events_key=keys.events(job_id),
                    usage_key=keys.tenant_usage(job.tenant), dead_key=keys.DEAD,
                    tenant_dead_key=keys.tenant_dead(job.tenant), queue_key=job.queue, pending_key=keys.PENDING,
                    waiting_key=keys.WAITING,
                    tenant=tenant or "", now=repr(time.time()), message=message, message_tag=tag,
                    events_maxlen=s.events_maxlen, max_active=s.max_queued_per_tenant,
                    max_bytes=s.max_queued_bytes_per_tenant, trace_id=current_trace_id() or "",
                )
        return as_text(out[0]), (as_text(out[1]) if len(out) > 1 else None)

    async def purge_dead(self, job_ids: list[str]) -> list[tuple[str, str, str | None]]:
        """Delete dead jobs for good (admin): [(id, "purged" | "not_dead" | "missing", the
        purged job's payload_ref or the state it is in)]. One round trip to read the records,
        one for the scripts (pipelined); each job's purge is its own atomic script."""
        ids = [j for j in dict.fromkeys(job_ids) if looks_like_id(j)]
        out: list[tuple[str, str, str | None]] = [(j, "missing", None) for j in job_ids if not looks_like_id(j)]
        if not ids:
            return out
        async with unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(keys.job(job_id), "tenant", "idempotency_key")
            records = await pipe.execute()
            pipe = self.redis.pipeline(transaction=False)
            for job_id, (tenant, idem) in zip(ids, records):
                tenant = as_text(tenant) if tenant else ""
                await self._purge(job_key=keys.job(job_id), events_key=keys.events(job_id), dead_key=keys.DEAD,
                            tenant_dead_key=keys.tenant_dead(tenant), tenant_jobs_key=keys.tenant_jobs(tenant),
                            idem_key=keys.idempotency(tenant, as_text(idem)) if idem else "", job_id=job_id, via=pipe)
            replies = await pipe.execute()
        for job_id, reply in zip(ids, replies):
            status = as_text(reply[0])
            detail = as_text(reply[1]) if len(reply) > 1 and reply[1] else None
            out.append((job_id, status, detail))
        return out

    async def dead_ids(self, limit: int) -> tuple[list[str], int]:
        """The newest `limit` dead job ids of every tenant, and how many there are in all."""
        async with unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrevrange(keys.DEAD, 0, limit - 1)
            pipe.zcard(keys.DEAD)
            ids, total = await pipe.execute()
        return [as_text(i) for i in ids], int(total)

    async def dead_count(self) -> int:
        async with unavailable_as_error():
            return int(await self.redis.zcard(keys.DEAD))

    def _finish_limits(self) -> dict[str, Any]:
        s = self.settings
        return {"events_maxlen": s.events_maxlen, "retention": s.retention_seconds,
                "events_grace": s.events_grace_seconds}

    # -- reads ------------------------------------------------------------------------------

    async def get(self, job_id: str, tenant: str | None) -> Job | None:
        """The job, or None when it does not exist or belongs to another tenant."""
        if not looks_like_id(job_id):
            return None
        async with unavailable_as_error():
            values = await self.redis.hmget(keys.job(job_id), RECORD_FIELDS)
        job = from_fields(values)
        if job is None or (tenant is not None and job.tenant != tenant):
            return None
        return job

    async def result(self, job_id: str) -> bytes | None:
        async with unavailable_as_error():
            return await self.redis.hget(keys.job(job_id), "result") or None

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
        after_score, after_id = parse_cursor(cursor)
        upper = repr(after_score) if after_score is not None else "+inf"
        found: list[Job] = []
        scanned = 0
        async with unavailable_as_error():
            while True:
                batch = await self.redis.zrevrangebyscore(index, upper, "-inf", start=0, num=limit + 1, withscores=True)
                batch = [(as_text(m), sc) for m, sc in batch
                         if not (after_score is not None and sc == after_score and after_id is not None and as_text(m) >= after_id)]
                if not batch:
                    return found, None
                pipe = self.redis.pipeline(transaction=False)
                for member, _ in batch:
                    pipe.hmget(keys.job(member), RECORD_FIELDS)
                for (member, score), values in zip(batch, await pipe.execute()):
                    scanned += 1
                    after_score, after_id = score, member
                    job = from_fields(values)  # None: expired (the index is trimmed by maintenance)
                    if job is not None and (state is None or job.state == state) and (
                            job_type is None or job.type == job_type):
                        found.append(job)
                    if len(found) == limit or scanned >= limit * 10:
                        return found, f"{after_score!r}|{after_id}"
                upper = repr(after_score)

    async def events(self, job_id: str, after: str = "0-0", count: int = 500) -> list[tuple[str, str, str]]:
        """The job's events after the given event id: (id, kind, data json). See jobs/events.py
        for the two that come from the record."""
        async with unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            pipe.xrange(keys.events(job_id), min=f"({after}" if after != "0-0" else "-", count=count)
            pipe.hmget(keys.job(job_id), REPLAY_FIELDS)
            rows, values = await pipe.execute()
        record = {f: as_text(v) for f, v in zip(REPLAY_FIELDS, values) if v is not None}
        stream = [(as_text(i), as_text(f[b"kind"]), as_text(f[b"data"])) for i, f in rows]
        return replay(after, stream, record, complete=len(rows) < count)

    async def token_usage(self, tenant: str, days: list[str]) -> dict[str, dict[str, dict[str, int]]]:
        """The tenant's LLM token counters of each day (YYYYMMDD) that has any:
        {day: {model: {"prompt_tokens", "completion_tokens", "jobs"}}}."""
        async with unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            for day in days:
                pipe.hgetall(keys.tenant_tokens(tenant, day))
            replies = await pipe.execute()
        names = {"prompt": "prompt_tokens", "completion": "completion_tokens", "jobs": "jobs"}
        out: dict[str, dict[str, dict[str, int]]] = {}
        for day, fields in zip(days, replies):
            for field, value in fields.items():
                model, _, kind = as_text(field).rpartition("|")
                if kind in names:
                    counts = out.setdefault(day, {}).setdefault(model, dict.fromkeys(names.values(), 0))
                    counts[names[kind]] = int(value)
        return out

    async def queue_stats(self) -> dict[str, Any]:
        """Depth and age of the oldest message per queue; running, scheduled or retrying, and dead
        counts; the lifetime counters."""
        now = time.time()
        async with unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            for q in ALL_QUEUES:
                pipe.llen(q)
                pipe.lindex(q, -1)  # the oldest: LPUSHed first, next to be taken
            for t in JobType:
                pipe.zcard(keys.running(t))
            pipe.zcard(keys.DEAD)
            pipe.zcard(keys.DELAYED)
            pipe.hgetall(keys.COUNTERS)
            replies = await pipe.execute()
            oldest_ids = [_message_job_id(replies[2 * i + 1]) for i in range(len(ALL_QUEUES))]
            pipe = self.redis.pipeline(transaction=False)
            for jid in oldest_ids:
                pipe.hget(keys.job(jid), "queued_at") if jid else pipe.echo("")
            queued_ats = await pipe.execute()
        queues: dict[str, dict[str, Any]] = {}
        for i, q in enumerate(ALL_QUEUES):
            qa = queued_ats[i]
            queues[q] = {
                "depth": int(replies[2 * i]),
                "oldest_age_seconds": round(max(0.0, now - float(qa)), 3) if qa else None,
            }
        at = 2 * len(ALL_QUEUES)
        running = {t.value: int(replies[at + i]) for i, t in enumerate(JobType)}
        at += len(JobType)
        return {
            "queues": queues,
            "running": sum(running.values()),
            "running_by_type": running,
            "dead": int(replies[at]),
            "delayed": int(replies[at + 1]),
            "totals": {as_text(k): int(v) for k, v in replies[at + 2].items()},
        }

    async def work(self, job_type: JobType) -> dict[str, int]:
        """Queued and running jobs of one worker type: what KEDA scales it on (GET
        /scaling/<type>). The lists its ScaledObject reads and the running indexes of the same
        types: a few O(1) reads in one round trip, whatever the number of jobs."""
        async with unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            for q in scaled_queues(job_type):
                pipe.llen(q)
            types = scaled_types(job_type)
            for t in types:
                pipe.zcard(keys.running(t))
            replies = await pipe.execute()
        depths, running = replies[:-len(types)], replies[-len(types):]
        return {"queued": sum(int(d) for d in depths), "running": sum(int(r) for r in running)}

    async def dead_jobs(self, tenant: str | None, limit: int = 100) -> list[Job]:
        """The newest dead jobs of `tenant` (every tenant's for None: an admin), in one round trip."""
        index = keys.DEAD if tenant is None else keys.tenant_dead(tenant)
        async with unavailable_as_error():
            flat = await self._dead_letters(dead_index_key=index, limit=limit, job_key_prefix=keys.job(""),
                                            extra_args=RECORD_FIELDS)
        width = 1 + len(RECORD_FIELDS)
        jobs = [from_fields(flat[i + 1:i + width]) for i in range(0, len(flat), width)]
        return [j for j in jobs if j is not None]

    async def ping(self) -> bool:
        try:
            async with unavailable_as_error():
                return bool(await self.redis.ping())
        except (StoreUnavailable, RedisError, OSError):
            return False


# What replaying a job's events needs from its record (jobs/events.py).
REPLAY_FIELDS = ("state", "created_at", "run_at", "finished_at", "error", "final_event")


STORE_TIMEOUT_SECONDS = 5.0


class unavailable_as_error:
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


def parse_cursor(cursor: str | None) -> tuple[float | None, str | None]:
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


def looks_like_id(job_id: str) -> bool:
    try:
        uuid.UUID(job_id)
    except (ValueError, AttributeError):
        return False
    return True

