"""The delayed-set mover: scheduled jobs at their time, and retries when their backoff ends,
go onto their queue.

A job that waits for a time sits in `offload:delayed` (a sorted set by due time, like Sidekiq's
retry and schedule sets or BullMQ's delayed set) with the message that will run it kept in its
record; no worker holds it. Every `delayed_poll_seconds` the mover takes the due ones, oldest
first, and each moves in one script that checks it is still due and still waiting (a cancelled
job just leaves the set), so every gateway replica can run the mover at once without a job
being queued twice. Cost when nothing is due: one ZRANGEBYSCORE per poll.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis

from offload_core.jobs import keys, scripts
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.record import as_text
from offload_core.settings import Settings
from offload_core.types import JobType

log = logging.getLogger("offload.mover")

BATCH = 200  # due jobs moved per round trip; a full batch is followed at once by the next


class DelayedMover:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis, self.settings = redis, settings
        self._move = scripts.MOVE.register(redis)

    async def move_due(self, now: float | None = None) -> int:
        """Queue every job due by `now` (default: now). Returns how many were queued."""
        moved = 0
        while True:
            at = time.time() if now is None else now
            due = await self.redis.zrangebyscore(keys.DELAYED, "-inf", at, start=0, num=BATCH)
            if not due:
                return moved
            ids = [as_text(d) for d in due]
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(keys.job(job_id), "queue", "type")
            records = await pipe.execute()
            pipe = self.redis.pipeline(transaction=False)
            for job_id, (queue, _) in zip(ids, records):
                await self._move(via=pipe, job_key=keys.job(job_id), events_key=keys.events(job_id),
                                 delayed_key=keys.DELAYED, pending_key=keys.PENDING, queue_key=as_text(queue or b""),
                                 job_id=job_id, now=repr(at), events_maxlen=self.settings.events_maxlen)
            outcomes = await pipe.execute()
            for (_, job_type), outcome in zip(records, outcomes):
                if as_text(outcome) == "moved" and job_type:
                    moved += 1
                    job_metrics.delayed_moved(JobType(as_text(job_type)))
            if len(ids) < BATCH:
                return moved
