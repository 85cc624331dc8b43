"""Reconciliation: the counts the quotas read are recomputed from the jobs themselves, and the
indexes of expired jobs are trimmed.

A tenant's `usage` hash (unfinished jobs, their input bytes) is kept by the scripts, in the same
atomic step as each job's move, so it only drifts if data is lost or deleted by hand. Every
`reconcile_seconds` one gateway replica takes one consistent snapshot (a MULTI/EXEC transaction)
of every unfinished job id (the pending, delayed, waiting and running indexes hold exactly the
queued, scheduled or retrying, waiting, and running jobs) together with the tenants' usage hashes
and file indexes, counts each tenant's jobs and bytes from the records, and its files' bytes (a
job's tenant and size, and a file's size, never change), and corrects
the difference with HINCRBY (increments made since the snapshot commute with it). The drift
found is exported (`offload_quota_drift_*`). Cost: the snapshot reads every unfinished job id in
one call (a few ms per 10,000), then their records in pipelined chunks.

It also trims what expiry leaves behind: a tenant's job and pipeline indexes keep the ids of
records that expired (they are dropped here, `TRIM_CHUNK` at a time), and the dead-letter sets keep the ids of
dead jobs whose records expired (their death was more than `retention_seconds` ago).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge

from offload_core.jobs import keys
from offload_core.jobs.record import as_text
from offload_core.settings import Settings
from offload_core.types import JobType

log = logging.getLogger("offload.reconcile")

READ_CHUNK = 1000  # records read per round trip while counting
TRIM_CHUNK = 500  # index entries looked at per round trip while trimming
TRIM_LIMIT = 50_000  # index entries looked at per tenant and pass; the next pass goes on

QUOTA_DRIFT_JOBS = Gauge("offload_quota_drift_jobs", "Unfinished-job counts found wrong by the last "
                         "reconciliation, summed over tenants", multiprocess_mode="livemostrecent")
QUOTA_DRIFT_BYTES = Gauge("offload_quota_drift_bytes", "Input-byte counts found wrong by the last "
                          "reconciliation, summed over tenants", multiprocess_mode="livemostrecent")
QUOTA_CORRECTIONS = Counter("offload_quota_corrections_total", "Tenant quota counts corrected by reconciliation")


@dataclass
class ReconcileReport:
    unfinished: int = 0
    drift: dict[str, tuple[int, int]] = field(default_factory=dict)  # tenant -> (jobs, bytes) corrected
    ghosts: int = 0  # ids in an index whose record is gone (removed)
    trimmed: int = 0  # index entries of expired jobs removed


class Reconciler:
    def __init__(self, redis: aioredis.Redis, settings: Settings, tenants: Callable[[], Iterable[str]]) -> None:
        """`tenants`: the tenants to keep true besides those with unfinished jobs (the configured ones)."""
        self.redis, self.settings, self._tenants = redis, settings, tenants
        self._seen: set[str] = set()  # tenants seen with unfinished jobs (checked in later passes too)

    def known_tenants(self) -> list[str]:
        return sorted(set(self._tenants()) | self._seen)

    async def run_once(self, now: float | None = None) -> ReconcileReport:
        report = ReconcileReport()
        await self._correct_usage(report)
        await self._trim(time.time() if now is None else now, report)
        return report

    async def _correct_usage(self, report: ReconcileReport) -> None:
        indexes = [keys.PENDING, keys.DELAYED, keys.WAITING, *(keys.running(t) for t in JobType)]
        known = self.known_tenants()
        async with self.redis.pipeline(transaction=True) as pipe:
            for index in indexes:
                pipe.zrange(index, 0, -1)
            for tenant in known:
                pipe.hmget(keys.tenant_usage(tenant), "active", "bytes")
            for tenant in known:
                pipe.zrange(keys.tenant_files(tenant), 0, -1)
            replies = await pipe.execute()
        members = {as_text(m): index for index, listed in zip(indexes, replies) for m in listed}
        stored = {t: (int(a or 0), int(b or 0)) for t, (a, b) in zip(known, replies[len(indexes):len(indexes) + len(known)])}
        files = {t: [as_text(f) for f in listed] for t, listed in zip(known, replies[len(indexes) + len(known):])}
        report.unfinished = len(members)
        counted: dict[str, list[int]] = {t: [0, 0] for t in known}
        ids = list(members)
        ghosts: list[str] = []
        for start in range(0, len(ids), READ_CHUNK):
            chunk = ids[start:start + READ_CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for job_id in chunk:
                pipe.hmget(keys.job(job_id), "tenant", "payload_bytes")
            for job_id, (tenant, size) in zip(chunk, await pipe.execute()):
                if tenant is None:
                    ghosts.append(job_id)
                    continue
                count = counted.setdefault(as_text(tenant), [0, 0])
                count[0] += 1
                count[1] += int(size or 0)
        if ghosts:  # listed as unfinished, with no record: nothing will ever end them
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ghosts:
                pipe.zrem(members[job_id], job_id)
            await pipe.execute()
            report.ghosts = len(ghosts)
            log.warning("removed %d ids of unfinished jobs that have no record", len(ghosts))
        # A tenant's files count in its bytes too (files/store.py); their sizes never change.
        uncertain: set[str] = set()
        for tenant, file_ids in files.items():
            for start in range(0, len(file_ids), READ_CHUNK):
                chunk = file_ids[start:start + READ_CHUNK]
                pipe = self.redis.pipeline(transaction=False)
                for file_id in chunk:
                    pipe.hget(keys.file(file_id), "bytes")
                for size in await pipe.execute():
                    if size is None:  # deleted since the snapshot: its size is unknown, so this pass
                        uncertain.add(tenant)  # leaves the tenant's bytes alone
                    counted[tenant][1] += int(size or 0)
        # A tenant with jobs that was not listed had no usage in the snapshot: the next pass lists it.
        self._seen |= set(counted)
        drift_jobs = drift_bytes = 0
        for tenant, (active, size) in stored.items():
            jobs_off, bytes_off = active - counted[tenant][0], size - counted[tenant][1]
            if tenant in uncertain:
                bytes_off = 0
            if jobs_off or bytes_off:
                pipe = self.redis.pipeline(transaction=False)
                pipe.hincrby(keys.tenant_usage(tenant), "active", -jobs_off)
                pipe.hincrby(keys.tenant_usage(tenant), "bytes", -bytes_off)
                await pipe.execute()
                report.drift[tenant] = (jobs_off, bytes_off)
                QUOTA_CORRECTIONS.inc()
                log.warning("tenant %s: quota counts were off by %+d jobs and %+d bytes; corrected",
                            tenant, jobs_off, bytes_off)
            drift_jobs += abs(jobs_off)
            drift_bytes += abs(bytes_off)
        QUOTA_DRIFT_JOBS.set(drift_jobs)
        QUOTA_DRIFT_BYTES.set(drift_bytes)

    async def _trim(self, now: float, report: ReconcileReport) -> None:
        expired_before = now - self.settings.retention_seconds
        tenants = self.known_tenants()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(keys.DEAD, "-inf", expired_before)
        for tenant in tenants:
            pipe.zremrangebyscore(keys.tenant_dead(tenant), "-inf", expired_before)
        report.trimmed += sum(await pipe.execute())
        for tenant in tenants:
            report.trimmed += await self._trim_index(keys.tenant_jobs(tenant), keys.job, expired_before)
            report.trimmed += await self._trim_index(keys.tenant_pipelines(tenant), keys.pipeline, expired_before)

    async def _trim_index(self, index: str, record_key: Callable[[str], str], created_before: float) -> int:
        """Drop the ids of expired records among an index's entries created before the cutoff (a
        job or pipeline that old is either finished and expired, or still unfinished and kept)."""
        removed, looked, upper = 0, 0, repr(created_before)
        while looked < TRIM_LIMIT:
            batch = await self.redis.zrevrangebyscore(index, upper, "-inf", start=0, num=TRIM_CHUNK, withscores=True)
            if not batch:
                break
            pipe = self.redis.pipeline(transaction=False)
            for member, _ in batch:
                pipe.exists(record_key(as_text(member)))
            gone = [member for (member, _), exists in zip(batch, await pipe.execute()) if not exists]
            if gone:
                removed += await self.redis.zrem(index, *gone)
            looked += len(batch)
            if len(batch) < TRIM_CHUNK:
                break
            upper = f"({batch[-1][1]!r}"
        return removed
