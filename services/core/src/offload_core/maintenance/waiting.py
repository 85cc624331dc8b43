"""The waiting sweep: pipeline steps that can no longer run are cancelled, so none waits forever.

A pipeline step waits in `offload:waiting` scored +inf while the steps before it may still
succeed. When one of them ends otherwise, finish.lua lowers the score to when the waiting step
is to be cancelled: now, after a cancel; `retention_seconds` from now, after a failure (a retry
of the failed step within that time puts the score back to +inf, requeue.lua). Every
`delayed_poll_seconds` the sweep cancels the ones due, oldest first, through finish.lua's
cancel mode (which checks the job still waits); each cancel lowers the score of the steps after
it in turn, so a chain ends one step per sweep. Cost when nothing is due: one ZRANGEBYSCORE.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from offload_core.jobs import keys, scripts
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.record import as_text
from offload_core.settings import Settings
from offload_core.types import JobState, JobType, Priority

BATCH = 200  # due steps cancelled per round trip; a full batch is followed at once by the next


class WaitingSweep:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis, self.settings = redis, settings
        self._finish = scripts.FINISH.register(redis)

    async def cancel_due(self, now: float | None = None) -> int:
        """Cancel every waiting step due by `now` (default: now). Returns how many were cancelled."""
        s, cancelled = self.settings, 0
        while True:
            at = time.time() if now is None else now
            due = [as_text(d) for d in await self.redis.zrangebyscore(keys.WAITING, "-inf", at, start=0, num=BATCH)]
            if not due:
                return cancelled
            pipe = self.redis.pipeline(transaction=False)
            for job_id in due:
                pipe.hmget(keys.job(job_id), "tenant", "type", "queue", "priority")
            records = await pipe.execute()
            pipe = self.redis.pipeline(transaction=False)
            asked: list[tuple[str, JobType, Priority]] = []
            for job_id, (tenant, job_type, queue, priority) in zip(due, records):
                if tenant is None:
                    continue  # no record: it only leaves the index (below)
                asked.append((job_id, JobType(as_text(job_type)), Priority(as_text(priority))))
                await self._finish(via=pipe, **keys.finish_keys(job_id, as_text(job_type), as_text(tenant),
                                                                as_text(queue)),
                                   mode="cancel", worker_id="waiting-sweep", tenant=as_text(tenant), new_state="cancelled",
                                   now=repr(at), result_json="", error_json="null", retry_at="", message="",
                                   message_tag="", tokens="", events_maxlen=s.events_maxlen, retention=s.retention_seconds,
                                   events_grace=s.events_grace_seconds)
            gone = [job_id for job_id, (tenant, *_) in zip(due, records) if tenant is None]
            for (job_id, job_type, priority), out in zip(asked, await pipe.execute()):
                status = as_text(out[0])
                if status == "ok":
                    cancelled += 1
                    job_metrics.finished(job_type, priority, JobState.CANCELLED)
                elif status in ("terminal", "missing"):
                    gone.append(job_id)  # ended otherwise: it only leaves the index
            if gone:
                await self.redis.zrem(keys.WAITING, *gone)
            if len(due) < BATCH:
                return cancelled
