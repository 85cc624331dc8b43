"""The lost-message sweep: a queued job whose queue message vanished is queued again.

kombu's Redis transport takes a message with BRPOP and records it as unacknowledged with a
second command. A worker killed between the two, or a Redis that loses the second write
(`appendfsync everysec` on a host crash), loses the message: kombu's visibility timeout
restores only what it recorded, and the job's record says `queued` with no worker running it,
so neither the lease reaper nor anything else would ever run it.

Every `lost_message_sweep_seconds`, one gateway replica (maintenance/loop.py holds a lock for
the interval) takes the jobs queued at least that long ago (`offload:pending`, kept by the
scripts) and looks for their messages on every queue list and in kombu's unacknowledged hash. A
job whose message is in neither, twice in a row a moment apart (a message moving between the two
is missed once, not twice), gets a new message at the head of its queue. A rescue by mistake is
harmless: the claim is a compare-and-set, so the job still runs once. (A running job whose
worker is gone is the lease reaper's: maintenance/leases.py.)

Cost: nothing while no job has waited a whole interval. Past that (a backlog older than the
interval), each sweep reads every queued message once inside Redis, `CHUNK` at a time, and
sends back only their job ids: a backlog of 100,000 took 0.9 s and 0.39 s of Redis time, at
most about 0.8 ms per call, so submissions are not held up behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from offload_core.jobs import keys, scripts
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.record import as_text
from offload_core.jobs.store import JobStore
from offload_core.observability.tracing import in_job_trace, publish_span
from offload_core.queue.messages import build_task_message
from offload_core.queue.routing import ALL_QUEUES, TASK_NAMES

log = logging.getLogger("offload.sweeper")

CHUNK = 200  # messages per Redis call while looking: under 1 ms of Redis time each
MAX_OVERDUE = 10_000  # jobs looked at per sweep; the next sweep takes the rest
CONFIRM_DELAY_SECONDS = 1.0  # between the two looks


@dataclass
class SweepReport:
    overdue: int = 0  # jobs queued for at least an interval
    messages_read: int = 0
    rescued: list[str] = field(default_factory=list)


class LostMessageSweeper:
    def __init__(self, store: JobStore, *, interval_seconds: float,
                 confirm_delay_seconds: float = CONFIRM_DELAY_SECONDS) -> None:
        """`interval_seconds`: how long a job must have been queued to be looked for."""
        self.store = store
        self.redis = store.redis
        self.interval = interval_seconds
        self.confirm_delay = confirm_delay_seconds
        self._message_ids = scripts.MESSAGE_IDS.register(self.redis)
        self._rescue = scripts.RESCUE.register(self.redis)

    async def sweep_once(self, now: float | None = None) -> SweepReport:
        report = SweepReport()
        overdue = await self._overdue((now if now is not None else time.time()) - self.interval)
        report.overdue = len(overdue)
        if not overdue:
            return report
        missing = set(overdue) - await self._find(overdue.keys(), report)
        if missing:
            await asyncio.sleep(self.confirm_delay)
            missing -= await self._find(missing, report)
        for job_id in sorted(missing):
            if await self._requeue(job_id, overdue[job_id]) == "rescued":
                report.rescued.append(job_id)
        return report

    async def _overdue(self, cutoff: float) -> dict[str, float]:
        """Job id -> when it was queued, for jobs queued before `cutoff`."""
        waiting = await self.redis.zrangebyscore(keys.PENDING, "-inf", cutoff, start=0, num=MAX_OVERDUE,
                                                 withscores=True)
        return {as_text(member): score for member, score in waiting}

    async def _find(self, wanted, report: SweepReport) -> set[str]:
        """Which of `wanted` have a message on a queue list or in kombu's unacknowledged hash.

        The lists come first: a message a worker takes meanwhile moves on to the hash, which is
        read after them, so it is still seen."""
        wanted = set(wanted)
        found: set[str] = set()
        sources = [(q, "list", "0") for q in ALL_QUEUES] + [(keys.KOMBU_UNACKED, "hash", "0")]
        for key, kind, position in sources:
            while True:
                reply = await self._message_ids(source_key=key, kind=kind, position=position, count=CHUNK)
                position, ids = as_text(reply[0]), reply[1:]
                report.messages_read += len(ids)
                found.update(i for i in map(as_text, ids) if i in wanted)
                if position == "0":
                    break
        return found

    async def _requeue(self, job_id: str, since: float) -> str:
        job = await self.store.get(job_id, None)
        if job is None:  # no record: nothing left to run
            await self.redis.zrem(keys.PENDING, job_id)
            return "gone"
        tag = str(uuid.uuid4())
        with in_job_trace(job.trace_id, "offload.rescue_lost_message", job_id), \
                publish_span(TASK_NAMES[job.type], job.queue, job_id) as trace_headers:
            message = build_task_message(self.store.app, job_id=job_id, job_type=job.type, queue=job.queue,
                                         tenant=job.tenant, headers=trace_headers, delivery_tag=tag)
            out = await self._rescue(
                job_key=keys.job(job_id), queue_key=job.queue, events_key=keys.events(job_id),
                counters_key=keys.COUNTERS, pending_key=keys.PENDING,
                job_id=job_id, since=repr(since), message=message, message_tag=tag, now=repr(time.time()),
                events_maxlen=self.store.settings.events_maxlen,
            )
        if as_text(out) == "rescued":
            job_metrics.lost_message_requeued(job.type)
        return as_text(out)
