"""The lease reaper: a running job whose lease lapsed lost its worker, and goes back to its queue.

A worker renews the lease of every job it runs (worker/leases.py): the job's score in
`offload:running:<type>` is when the lease lapses. A worker that is gone (its node lost, its
container OOM-killed, SIGKILL) renews nothing, so within `lease_seconds` its jobs' scores fall
behind the clock. Every `lease_reaper_seconds` the reaper takes those jobs and, in one script
each (scripts/finish.lua, mode `lost`), checks the lease is still lapsed and the job still
running, drops kombu's unacknowledged copy of its message (so the visibility timeout, an hour
by default, does not run it once more), and puts a new message at the head of its queue. A job
that was on its last attempt ends `dead` (WorkerLost) instead, and one whose cancel was
requested ends `cancelled`. Because the job is back on its list, KEDA sees it and wakes a
worker of its type even from zero.

A run that was only paused (a long GC, a network partition) and comes back finds it lost the
job: its heartbeat says so and its writes are refused (the record no longer names it), so the
result is still written once. Every gateway replica may reap: each job is moved by one script
that checks first, so two reapers never queue a job twice.
"""

from __future__ import annotations

import logging
import time
import uuid

import redis.asyncio as aioredis
from celery import Celery

from offload_core.jobs import keys, scripts
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.record import RECORD_FIELDS, as_text, from_fields
from offload_core.observability.tracing import in_job_trace, publish_span
from offload_core.queue.messages import build_task_message
from offload_core.queue.routing import TASK_NAMES
from offload_core.settings import Settings
from offload_core.types import JobState, JobType

log = logging.getLogger("offload.leases")

BATCH = 100  # lapsed leases looked at per job type and pass


class LeaseReaper:
    def __init__(self, redis: aioredis.Redis, settings: Settings, app: Celery) -> None:
        self.redis, self.settings, self.app = redis, settings, app
        self._finish = scripts.FINISH.register(redis)

    async def reap(self, now: float | None = None) -> dict[str, int]:
        """Recover every running job whose lease lapsed by `now`: {"requeued": n, "dead": n, ...}."""
        at = time.time() if now is None else now
        outcomes: dict[str, int] = {}
        for job_type in JobType:
            lapsed = await self.redis.zrangebyscore(keys.running(job_type), "-inf", at, start=0, num=BATCH)
            for job_id in map(as_text, lapsed):
                outcome = await self._recover(job_id, job_type, at)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes

    async def _recover(self, job_id: str, job_type: JobType, now: float) -> str:
        job = from_fields(await self.redis.hmget(keys.job(job_id), RECORD_FIELDS))
        if job is None or job.state is not JobState.RUNNING:
            await self.redis.zrem(keys.running(job_type), job_id)  # an entry its job outlived
            return "gone"
        tag = str(uuid.uuid4())
        with in_job_trace(job.trace_id, "offload.recover_lost_run", job_id), \
                publish_span(TASK_NAMES[job.type], job.queue, job_id) as trace_headers:
            message = build_task_message(self.app, job_id=job_id, job_type=job.type, queue=job.queue,
                                         tenant=job.tenant, headers=trace_headers, delivery_tag=tag)
            s = self.settings
            out = await self._finish(
                **keys.finish_keys(job.id, job.type, job.tenant, job.queue), mode="lost", worker_id="",
                tenant=job.tenant, new_state="", now=repr(now), result_json="", error_json="null", retry_at="",
                message=message, message_tag=tag, events_maxlen=s.events_maxlen, retention=s.retention_seconds,
                events_grace=s.events_grace_seconds, tokens="")
        status = as_text(out[0])
        if status == "requeued":
            job_metrics.lost_run_requeued(job.type)
            log.warning("job %s: its worker %s was lost (lease lapsed); queued again", job_id, job.worker)
            return "requeued"
        if status == "ok":
            ended = JobState(as_text(out[1]))
            job_metrics.finished(job.type, job.priority, ended)
            log.warning("job %s: its worker %s was lost on its last attempt; %s", job_id, job.worker, ended.value)
            return ended.value
        return status  # alive (renewed meanwhile) | stale (finished meanwhile)
