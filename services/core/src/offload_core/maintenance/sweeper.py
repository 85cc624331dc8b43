"""The lost-message sweep: a job whose queue message vanished is queued again.

kombu's Redis transport takes a message with BRPOP and records it as unacknowledged with a
second command. A worker killed between the two, or a Redis that loses the second write
(`appendfsync everysec` on a host crash), loses the message: kombu's visibility timeout
restores only what it recorded, so nothing would ever run the job, and it would stay `queued`
(or `retrying`) for good.

The same holds for a job left `running` by a worker that is gone (its lease lapsed) when no
message is left to run it again: normally kombu's unacknowledged copy brings it back after the
visibility timeout, but a message acknowledged before the run was recorded, by any path, would
leave the job `running` for good.

Every `lost_message_sweep_seconds`, one gateway replica (it holds a Redis lock for the interval)
takes the jobs that have waited at least that long for a worker (`offload:pending`, kept by the
state scripts in offload_core.jobs.scripts) and the jobs running for that long with no lease, and looks for their
messages on every queue list and in kombu's unacknowledged hash. A job whose message is in
neither, twice in a row a moment apart (a message moving between the two is missed once, not
twice), gets a new message at the head of its queue. A rescue by mistake is harmless: the claim
is a compare-and-set, so the job still runs once (a running job's claim takes the run over, as
after any lost worker, and ends it `dead` once its attempts are spent).

Cost: nothing while no job has waited a whole interval. Past that (a backlog older than the
interval), each sweep reads every queued message once inside Redis, `CHUNK` at a time, and
sends back only their job ids: a backlog of 100,000 took 0.9 s and 0.39 s of Redis time, at
most about 0.8 ms per call, so submissions are not held up behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from offload_core.errors import StoreUnavailable
from offload_core.jobs import keys, scripts
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.record import as_text
from offload_core.jobs.store import JobStore
from offload_core.observability.tracing import in_job_trace, publish_span
from offload_core.queue.messages import build_task_message
from offload_core.queue.routing import ALL_QUEUES, TASK_NAMES, queue_name

log = logging.getLogger("offload.sweeper")

CHUNK = 200  # messages per Redis call while looking: under 1 ms of Redis time each
MAX_OVERDUE = 10_000  # jobs looked at per sweep; the next sweep takes the rest
CONFIRM_DELAY_SECONDS = 1.0  # between the two looks


@dataclass
class SweepReport:
    overdue: int = 0  # jobs waiting for a worker for at least an interval, or running without a lease
    messages_read: int = 0
    rescued: list[str] = field(default_factory=list)


class LostMessageSweeper:
    def __init__(self, store: JobStore, *, interval_seconds: float,
                 confirm_delay_seconds: float = CONFIRM_DELAY_SECONDS) -> None:
        self.store = store
        self.redis = store.redis
        self.interval = interval_seconds
        self.confirm_delay = confirm_delay_seconds
        self._message_ids = scripts.MESSAGE_IDS.register(self.redis)
        self._rescue = scripts.RESCUE.register(self.redis)

    async def run(self) -> None:
        """Sweep every interval, on whichever replica takes the lock first, until cancelled."""
        while True:
            try:
                if await self.redis.set(keys.SWEEPER_LOCK, str(time.time()), nx=True,
                                        px=max(1, int(self.interval * 1000))):
                    report = await self.sweep_once()
                    if report.rescued:
                        log.warning("queued %d jobs again whose queue message was lost: %s",
                                    len(report.rescued), ", ".join(report.rescued[:20]))
            except asyncio.CancelledError:
                raise
            except (StoreUnavailable, RedisError, OSError) as exc:
                log.warning("lost-message sweep skipped: Redis unavailable (%s)", exc)
            except Exception:  # noqa: BLE001 - a sweep must never take the gateway down
                log.exception("lost-message sweep failed")
            await asyncio.sleep(self.interval)

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
            if await self._requeue(job_id, *overdue[job_id]) == "rescued":
                report.rescued.append(job_id)
        return report

    async def _overdue(self, cutoff: float) -> dict[str, tuple[str, float]]:
        """Job id -> (how it waits, its time in its index), for jobs waiting since before `cutoff`
        and jobs running since before it whose lease has lapsed."""
        waiting = await self.redis.zrangebyscore(keys.PENDING, "-inf", cutoff, start=0, num=MAX_OVERDUE,
                                                 withscores=True)
        out = {as_text(member): ("waiting", score) for member, score in waiting}
        running = await self.redis.zrangebyscore(keys.RUNNING, "-inf", cutoff, start=0, num=MAX_OVERDUE,
                                                 withscores=True)
        if running:
            pipe = self.redis.pipeline(transaction=False)
            for member, _ in running:
                pipe.exists(keys.lease(as_text(member)))
            for (member, score), leased in zip(running, await pipe.execute()):
                if not leased:
                    out[as_text(member)] = ("running", score)
        return out

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

    async def _requeue(self, job_id: str, how: str, since: float) -> str:
        index = keys.RUNNING if how == "running" else keys.PENDING
        job = await self.store.get(job_id, None)
        if job is None:  # expired while it waited: nothing left to run
            await self.redis.zrem(index, job_id)
            return "gone"
        queue = queue_name(job.type, job.priority)
        with in_job_trace(job.trace_id, "offload.rescue_lost_message", job_id), \
                publish_span(TASK_NAMES[job.type], queue, job_id) as trace_headers:
            message = build_task_message(self.store.app, job_id=job_id, job_type=job.type, queue=queue,
                                         tenant=job.tenant, headers=trace_headers)
            out = await self._rescue(
                job_key=keys.job(job_id), index_key=index, queue_key=queue, events_key=keys.events(job_id),
                counters_key=keys.COUNTERS, lease_key=keys.lease(job_id), pending_key=keys.PENDING,
                job_id=job_id, since=repr(since), message=message, now=repr(time.time()),
                events_maxlen=self.store.settings.events_maxlen, how=how,
            )
        if as_text(out) == "rescued":
            job_metrics.lost_message_requeued(job.type)
        return as_text(out)

