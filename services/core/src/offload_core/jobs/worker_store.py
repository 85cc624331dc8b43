"""The job store as workers use it (synchronous, one per worker process).

Every state change is a Lua script from `offload_core.jobs.scripts` that checks this worker still owns
the run, so a duplicate delivery or a worker that lost its lease cannot write a second result.
Each transition it records is also counted (`offload_core.jobs.metrics`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from offload_core.jobs import keys, scripts
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.record import Job, as_text
from offload_core.settings import Settings
from offload_core.types import JobState


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
        **settings.redis_tls_options(),
    )


class WorkerJobStore:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._claim = scripts.CLAIM.register(client)
        self._heartbeat = scripts.HEARTBEAT.register(client)
        self._progress = scripts.PROGRESS.register(client)
        self._tokens = scripts.TOKENS.register(client)
        self._finish = scripts.FINISH.register(client)

    def claim(self, job_id: str, worker_id: str, *, tenant: str | None = None, replace_holder: str = "") -> Claim:
        """Take a run of `job_id`. `tenant` comes with the job's message; without it (a message
        queued by an older gateway) it is read from the record, one round trip more."""
        s = self.settings
        if tenant is None:
            stored = self.redis.hget(keys.job(job_id), "tenant")
            tenant = stored.decode() if stored else ""
        out = self._claim(
            job_key=keys.job(job_id), lease_key=keys.lease(job_id), events_key=keys.events(job_id),
            running_key=keys.RUNNING, active_key=keys.tenant_active(tenant), payload_key=keys.payload(job_id),
            dead_key=keys.DEAD, counters_key=keys.COUNTERS, pending_key=keys.PENDING,
            worker_id=worker_id, lease_ms=s.lease_seconds * 1000, now=repr(time.time()),
            events_maxlen=s.events_maxlen, replaceable_holder=replace_holder, retention=s.retention_seconds,
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
        owned, cancel = self._heartbeat(lease_key=keys.lease(job_id), job_key=keys.job(job_id),
                                        worker_id=worker_id, lease_ms=self.settings.lease_seconds * 1000)
        return bool(owned), bool(cancel)

    def progress(self, job_id: str, worker_id: str, current: int, total: int, message: str) -> int:
        """Record progress. Returns 1 if cancellation was requested, -1 if the run was lost."""
        body = json.dumps({"current": current, "total": total, "message": message}, separators=(",", ":"))
        return int(self._progress(job_key=keys.job(job_id), events_key=keys.events(job_id),
                                  worker_id=worker_id, progress=body, events_maxlen=self.settings.events_maxlen))

    def tokens(self, job_id: str, worker_id: str, texts: list[str]) -> int:
        bodies = [json.dumps({"text": t}, separators=(",", ":"), ensure_ascii=False) for t in texts]
        return int(self._tokens(job_key=keys.job(job_id), events_key=keys.events(job_id),
                                worker_id=worker_id, events_maxlen=self.settings.events_maxlen, extra_args=bodies))

    def finish(
        self, job: Job, worker_id: str, state: JobState, *, result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None, retry_at: float | None = None,
    ) -> bool:
        """Move a run to its end (or to `retrying`). False: this worker no longer owns it."""
        s = self.settings
        out = self._finish(
            job_key=keys.job(job.id), result_key=keys.result(job.id), payload_key=keys.payload(job.id),
            events_key=keys.events(job.id), lease_key=keys.lease(job.id), running_key=keys.RUNNING,
            dead_key=keys.DEAD, active_key=keys.tenant_active(job.tenant), counters_key=keys.COUNTERS,
            pending_key=keys.PENDING,
            worker_id=worker_id, new_state=state.value, now=repr(time.time()),
            result_json=json.dumps(result, separators=(",", ":"), ensure_ascii=False) if result is not None else "",
            error_json=json.dumps(error, separators=(",", ":")) if error else "null",
            events_maxlen=s.events_maxlen, retention=s.retention_seconds, retry_at=repr(retry_at or 0.0),
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

