"""The job store as workers use it (synchronous, one per worker process).

Every state change is a Lua script from `offload_core.lua` that checks this worker still owns
the run, so a duplicate delivery or a worker that lost its lease cannot write a second result.
Each transition it records is also counted (`offload_core.job_metrics`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from . import job_metrics, keys, lua
from .jobs import Job, as_text
from .settings import Settings
from .types import JobState


@dataclass(frozen=True)
class Claim:
    status: str  # claimed | missing | terminal | leased | cancelled | dead
    job: Job | None = None
    state: str | None = None
    holder: str | None = None
    lease_ms_left: int = 0
    payload: bytes | None = None  # with a claimed job: its input (None when it expired)


def connect_sync(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=15,
    )


class WorkerJobStore:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._claim = client.register_script(lua.CLAIM)
        self._heartbeat = client.register_script(lua.HEARTBEAT)
        self._progress = client.register_script(lua.PROGRESS)
        self._tokens = client.register_script(lua.TOKENS)
        self._finish = client.register_script(lua.FINISH)

    def claim(self, job_id: str, worker_id: str, *, tenant: str | None = None, replace_holder: str = "") -> Claim:
        """Take a run of `job_id`. `tenant` comes with the job's message; without it (a message
        queued by an older gateway) it is read from the record, one round trip more."""
        s = self.settings
        if tenant is None:
            stored = self.redis.hget(keys.job(job_id), "tenant")
            tenant = stored.decode() if stored else ""
        active = keys.tenant_active(tenant)
        out = self._claim(
            keys=[keys.job(job_id), keys.lease(job_id), keys.events(job_id), keys.RUNNING, active,
                  keys.payload(job_id), keys.DEAD, keys.COUNTERS, keys.PENDING],
            args=[worker_id, s.lease_seconds * 1000, repr(time.time()), s.events_maxlen, replace_holder,
                  s.retention_seconds],
        )
        status = as_text(out[0])
        if status == "claimed":
            payload, flat = out[1], out[2:]
            job = Job.from_hash(dict(zip(flat[::2], flat[1::2])))
            job_metrics.run_started(job)
            return Claim(status, job=job, payload=payload)
        if status == "terminal":
            return Claim(status, state=as_text(out[1]))
        if status == "leased":
            return Claim(status, holder=as_text(out[1]), lease_ms_left=max(0, int(out[2])))
        if status in ("dead", "cancelled") and (ended := self.get(job_id)) is not None:
            job_metrics.finished(ended.type, ended.priority, JobState(status))  # this claim ended it
        return Claim(status)

    def heartbeat(self, job_id: str, worker_id: str) -> tuple[bool, bool]:
        """Renew the lease. Returns (still owned, cancel requested)."""
        owned, cancel = self._heartbeat(
            keys=[keys.lease(job_id), keys.job(job_id)], args=[worker_id, self.settings.lease_seconds * 1000]
        )
        return bool(owned), bool(cancel)

    def progress(self, job_id: str, worker_id: str, current: int, total: int, message: str) -> int:
        """Record progress. Returns 1 if cancellation was requested, -1 if the run was lost."""
        body = json.dumps({"current": current, "total": total, "message": message}, separators=(",", ":"))
        return int(self._progress(keys=[keys.job(job_id), keys.events(job_id)],
                                  args=[worker_id, body, self.settings.events_maxlen]))

    def tokens(self, job_id: str, worker_id: str, texts: list[str]) -> int:
        bodies = [json.dumps({"text": t}, separators=(",", ":"), ensure_ascii=False) for t in texts]
        return int(self._tokens(keys=[keys.job(job_id), keys.events(job_id)],
                                args=[worker_id, self.settings.events_maxlen, *bodies]))

    def finish(
        self, job: Job, worker_id: str, state: JobState, *, result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None, retry_at: float | None = None,
    ) -> bool:
        """Move a run to its end (or to `retrying`). False: this worker no longer owns it."""
        s = self.settings
        out = self._finish(
            keys=[keys.job(job.id), keys.result(job.id), keys.payload(job.id), keys.events(job.id),
                  keys.lease(job.id), keys.RUNNING, keys.DEAD, keys.tenant_active(job.tenant), keys.COUNTERS,
                  keys.PENDING],
            args=[worker_id, state.value, repr(time.time()),
                  json.dumps(result, separators=(",", ":"), ensure_ascii=False) if result is not None else "",
                  json.dumps(error, separators=(",", ":")) if error else "null",
                  s.events_maxlen, s.retention_seconds, repr(retry_at or 0.0)],
        )
        recorded = as_text(out[0]) == "ok"
        if recorded:
            job_metrics.run_ended(job, state)
        return recorded

    def payload(self, job_id: str) -> bytes | None:
        return self.redis.get(keys.payload(job_id))

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.hgetall(keys.job(job_id))
        return Job.from_hash(raw) if raw else None

    def set_webhook_status(self, job_id: str, status: dict[str, Any]) -> None:
        self.redis.hset(keys.job(job_id), "webhook", json.dumps(status, separators=(",", ":")))

