"""Keeping the leases of running jobs alive: one thread per worker process, not one per job.

A job's lease lapses `lease_seconds` after its last heartbeat: the gateway's lease reaper then
queues the job again, and another worker may take it over. The keeper renews every lease it
holds about three times per lease period. It starts once per process (`PerProcess` makes a new
one after a fork) and serves every job that process runs, one at a time (prefork, solo) or
several (threads); starting and joining a thread for every job cost a no-op job about a quarter
of its time (BENCHMARKS.md, "Tuning").
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from offload_core.jobs.worker_store import WorkerJobStore
from offload_core.types import JobType


@dataclass(eq=False)
class Lease:
    """One run's lease, as its job sees it: what the last heartbeat learnt."""

    job_id: str
    job_type: JobType
    worker_id: str
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    next_beat: float = 0.0


class LeaseKeeper:
    def __init__(self, store: WorkerJobStore, interval: float) -> None:
        self.store, self.interval = store, interval
        self._leases: dict[str, Lease] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def hold(self, job_id: str, job_type: JobType, worker_id: str) -> Lease:
        """Renew this run's lease until `release`; the first renewal is one interval from now."""
        lease = Lease(job_id, job_type, worker_id, next_beat=time.monotonic() + self.interval)
        with self._changed:
            self._leases[job_id] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
            # No notify: the keeper already wakes no later than one interval from now, which is
            # when this lease is first due. Waking it for every job cost a thread switch per job.
        return lease

    def release(self, lease: Lease) -> None:
        with self._changed:
            if self._leases.get(lease.job_id) is lease:
                del self._leases[lease.job_id]

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [lease for lease in self._leases.values() if lease.next_beat <= now]
                if not due:
                    soonest = min((lease.next_beat for lease in self._leases.values()), default=now + self.interval)
                    self._changed.wait(max(0.01, soonest - now))
                    continue
            for lease in due:  # outside the lock: a heartbeat is a Redis round trip
                lease.next_beat = time.monotonic() + self.interval
                self._beat(lease)

    def _beat(self, lease: Lease) -> None:
        try:
            owned, cancel = self.store.heartbeat(lease.job_id, lease.job_type, lease.worker_id)
        except (RedisError, OSError):
            return  # Redis blinked; the next beat tries again before the lease runs out
        if cancel:
            lease.cancel_requested.set()
        if not owned:
            lease.lost.set()
            self.release(lease)
