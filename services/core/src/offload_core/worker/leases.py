"""Keeping the leases of running jobs alive: one thread per worker process, not one per job.

The same thread enforces the hard time limit where Celery does not (the threads and solo
pools, where no child process can be killed): at a run's hard deadline it calls the runner's
`on_hard_limit`, which records the outcome and ends that run's I/O (`Lease.aborts`). It also
renews the capacity slots a run holds (a global in-flight cap, `worker/capacity.py`).

A job's lease lapses `lease_seconds` after its last heartbeat: the gateway's lease reaper then
queues the job again, and another worker may take it over. The keeper renews every lease it
holds about three times per lease period. It starts once per process (`PerProcess` makes a new
one after a fork) and serves every job that process runs, one at a time (prefork, solo) or
several (threads); starting and joining a thread for every job cost a no-op job about a quarter
of its time (BENCHMARKS.md, "Tuning").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from offload_core.jobs.worker_store import WorkerJobStore
from offload_core.types import JobType

log = logging.getLogger("offload.leases")


@dataclass(eq=False)
class Lease:
    """One run's lease, as its job sees it: what the last heartbeat learnt."""

    job_id: str
    job_type: JobType
    worker_id: str
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    next_beat: float = 0.0
    # The hard time limit, when this process enforces it (monotonic time; None: not here).
    hard_deadline: float | None = None
    on_hard_limit: Callable[["Lease"], None] | None = None
    timed_out: bool = False  # the hard limit ended this run
    # Ways to end this run's blocking I/O at once (closing its HTTP stream), for the hard limit.
    aborts: list[Callable[[], None]] = field(default_factory=list)
    # Capacity slots the run holds (worker/capacity.py): renewed with the lease.
    slots: list[str] = field(default_factory=list)

    def abort(self) -> None:
        for abort in list(self.aborts):
            try:
                abort()
            except Exception:  # noqa: BLE001 - ending a stream that is already ending
                log.debug("job %s: abort hook failed", self.job_id, exc_info=True)


class LeaseKeeper:
    def __init__(self, store: WorkerJobStore, interval: float) -> None:
        self.store, self.interval = store, interval
        self._leases: dict[str, Lease] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def hold(self, job_id: str, job_type: JobType, worker_id: str, *, hard_limit: float | None = None,
             on_hard_limit: Callable[[Lease], None] | None = None) -> Lease:
        """Renew this run's lease until `release`; the first renewal is one interval from now.
        With `hard_limit` (seconds), `on_hard_limit(lease)` is called from this keeper's thread
        once the run has lasted that long."""
        now = time.monotonic()
        lease = Lease(job_id, job_type, worker_id, next_beat=now + self.interval,
                      hard_deadline=now + hard_limit if hard_limit is not None else None, on_hard_limit=on_hard_limit)
        with self._changed:
            self._leases[job_id] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
            # No notify: the keeper already wakes no later than one interval from now, which is
            # when this lease is first due. Waking it for every job cost a thread switch per job.
            # Only a hard limit shorter than that interval needs the keeper awake sooner.
            if lease.hard_deadline is not None and lease.hard_deadline < now + self.interval:
                self._changed.notify()
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
                over = [lease for lease in self._leases.values()
                        if lease.hard_deadline is not None and lease.hard_deadline <= now]
                if not due and not over:
                    soonest = min((min(lease.next_beat, lease.hard_deadline or lease.next_beat)
                                   for lease in self._leases.values()), default=now + self.interval)
                    self._changed.wait(max(0.01, soonest - now))
                    continue
            for lease in over:  # outside the lock: recording the outcome takes Redis round trips
                lease.hard_deadline = None
                self._hard_limit(lease)
            for lease in due:
                lease.next_beat = time.monotonic() + self.interval
                self._beat(lease)

    def _hard_limit(self, lease: Lease) -> None:
        try:
            if lease.on_hard_limit is not None:
                lease.on_hard_limit(lease)
        except Exception:  # noqa: BLE001 - the keeper must go on renewing every other lease
            log.exception("job %s: recording the hard time limit failed", lease.job_id)
            lease.lost.set()
            lease.abort()

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
            return
        for slot in list(lease.slots):
            try:
                self.store.renew_capacity(slot, lease.job_id)
            except (RedisError, OSError):
                return
