"""The job store as workers use it (synchronous, one per worker process).

Every state change is a Lua script from `offload_core.jobs.scripts` that checks this worker
still owns the run, so a duplicate delivery or a worker that lost its lease cannot write a
second result. Each transition it records is also counted (`offload_core.jobs.metrics`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from offload_core.jobs import keys, scripts
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.record import RECORD_FIELDS, Job, as_text, from_fields
from offload_core.settings import Settings
from offload_core.types import JobState, JobType

# Fields of the record that are not the record: the input, the result, a waiting job's message.
_NOT_RECORD = frozenset({b"payload", b"result", b"message", b"message_tag"})


@dataclass(frozen=True)
class TokenUsage:
    """What an LLM run used, as its server reported it, counted under the model name asked for."""

    model: str
    prompt: int
    completion: int


@dataclass(frozen=True)
class Claim:
    status: str  # claimed | missing | terminal | waiting | leased
    job: Job | None = None
    intent: str = "run"  # with a claimed job: run | lost (end it dead) | cancel (end it cancelled)
    state: str | None = None
    holder: str | None = None
    lease_seconds_left: float = 0.0
    payload: bytes | None = None  # with a claimed job: its inline input (None when it is in object storage)


def connect_sync(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=15,
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
        self._capacity = scripts.CAPACITY.register(client)

    def claim(self, job_id: str, worker_id: str, job_type: JobType, *, replace_holder: str = "") -> Claim:
        """Take a run of `job_id`, a job of `job_type` (the task that delivered it says which)."""
        s = self.settings
        out = self._claim(
            job_key=keys.job(job_id), running_key=keys.running(job_type), pending_key=keys.PENDING,
            events_key=keys.events(job_id),
            worker_id=worker_id, now=repr(time.time()), lease_seconds=s.lease_seconds,
            events_maxlen=s.events_maxlen, replaceable_holder=replace_holder,
        )
        status = as_text(out[0])
        if status == "claimed":
            fields = dict(zip(out[2::2], out[3::2]))
            payload = fields.get(b"payload") or None
            job = Job.from_hash({k: v for k, v in fields.items() if k not in _NOT_RECORD})
            intent = as_text(out[1])
            if intent == "run":
                job_metrics.run_started(job)
            return Claim(status, job=job, intent=intent, payload=payload)
        if status in ("terminal", "waiting"):
            return Claim(status, state=as_text(out[1]))
        if status == "leased":
            return Claim(status, holder=as_text(out[1]), lease_seconds_left=max(0.0, float(out[2])))
        return Claim(status)

    def forget(self, job_id: str, job_type: JobType) -> None:
        """A message named a job with no record (deleted by hand, or a store that lost data):
        take it out of every index, so reconciliation does not count a job that is not there."""
        pipe = self.redis.pipeline(transaction=False)
        for index in (keys.PENDING, keys.DELAYED, keys.running(job_type)):
            pipe.zrem(index, job_id)
        pipe.execute()

    def heartbeat(self, job_id: str, job_type: JobType, worker_id: str) -> tuple[bool, bool]:
        """Renew the lease. Returns (still owned, cancel requested)."""
        owned, cancel = self._heartbeat(job_key=keys.job(job_id), running_key=keys.running(job_type),
                                        worker_id=worker_id, now=repr(time.time()),
                                        lease_seconds=self.settings.lease_seconds)
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
        error: dict[str, Any] | None = None, retry_at: float | None = None, message: str = "",
        message_tag: str = "", tokens: TokenUsage | None = None,
    ) -> bool:
        """Move a run to its end, or to `retrying` until `retry_at` (then `message`, tagged
        `message_tag`, queues it again). False: this worker no longer owns the run. `tokens`
        (an LLM result's usage) is added to the tenant's daily counters with the result."""
        s = self.settings
        now = time.time()
        out = self._finish(
            **keys.finish_keys(job.id, job.type, job.tenant, job.queue, now=now), mode="run", worker_id=worker_id,
            tenant=job.tenant, new_state=state.value, now=repr(now),
            tokens=json.dumps({"model": tokens.model, "prompt": tokens.prompt, "completion": tokens.completion,
                               "ttl": s.llm_usage_retention_days * 86400}) if tokens is not None else "",
            result_json=json.dumps(result, separators=(",", ":"), ensure_ascii=False) if result is not None else "",
            error_json=json.dumps(error, separators=(",", ":")) if error else "null",
            retry_at=repr(retry_at or 0.0), message=message, message_tag=message_tag,
            events_maxlen=s.events_maxlen, retention=s.retention_seconds, events_grace=s.events_grace_seconds,
        )
        recorded = as_text(out[0]) == "ok"
        if recorded:
            job_metrics.run_ended(job, state)
        return recorded

    # -- capacity slots (a global in-flight cap; worker/capacity.py) ------------------------------

    def acquire_capacity(self, name: str, holder: str, capacity: int) -> bool:
        return bool(self._capacity(slots_key=keys.capacity(name), mode="acquire", holder=holder, now=repr(time.time()),
                                   lease_seconds=self.settings.lease_seconds, capacity=capacity))

    def renew_capacity(self, name: str, holder: str) -> bool:
        return bool(self._capacity(slots_key=keys.capacity(name), mode="renew", holder=holder, now=repr(time.time()),
                                   lease_seconds=self.settings.lease_seconds, capacity=0))

    def release_capacity(self, name: str, holder: str) -> None:
        self._capacity(slots_key=keys.capacity(name), mode="release", holder=holder, now="0", lease_seconds=0,
                       capacity=0)

    def results(self, job_ids: list[str]) -> list[dict[str, Any] | None]:
        """The stored results of `job_ids` (None for one with none: not succeeded, or expired)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(keys.job(job_id), "result")
        return [json.loads(raw) if raw else None for raw in pipe.execute()]

    def get(self, job_id: str) -> Job | None:
        return from_fields(self.redis.hmget(keys.job(job_id), RECORD_FIELDS))

    def set_webhook_status(self, job_id: str, status: dict[str, Any]) -> None:
        self.redis.hset(keys.job(job_id), "webhook", json.dumps(status, separators=(",", ":")))
