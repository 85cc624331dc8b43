"""A worker process's presence: its entry in the worker registry, and the pulse of its consumer loop.

Both come from Celery's consumer loop itself, not from a thread beside it: a Celery consumer
bootstep puts two timers on the loop's own timer (the event loop's, with kombu's Redis
transport, whatever the pool), so they fire only while the loop turns.

- the pulse (every second) notes that the loop made progress; the worker's /healthz fails once
  it has not for OFFLOAD_WORKER_LIVENESS_SECONDS while Redis answers (worker/http.py): a hung
  loop takes no job and acknowledges none, and only a restart helps;
- the beat (every OFFLOAD_WORKER_HEARTBEAT_SECONDS) writes the registry entry
  (offload_core/fleet/registry.py): type, host, pid, pool, concurrency, version, the ids of the
  jobs running now, and the runs processed and failed. A clean stop removes it.

The counts are kept in memory shared with the job processes (RunCounts, made before the pool
forks), so a job costs the registry no Redis command.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import time
from importlib import metadata
from typing import Any

from celery import bootsteps
from celery.worker import state as worker_state
from redis.exceptions import RedisError

from offload_core.fleet.registry import RegistryWriter, WorkerIdentity
from offload_core.queue.routing import consumed_by
from offload_core.settings import Settings
from offload_core.types import JobState, JobType

log = logging.getLogger("offload.worker.presence")

PULSE_SECONDS = 1.0
FAILED_OUTCOMES = frozenset({JobState.FAILED, JobState.DEAD, JobState.RETRYING})


def node_name(job_type: JobType) -> str:
    """The Celery node name, unique per process: two workers of a type on one host (tests, `make
    run` twice) must not answer `celery inspect` under one name."""
    return f"{job_type.value}-{os.getpid()}@{socket.gethostname()}"


def offload_version() -> str:
    try:
        return metadata.version("offload-core")
    except metadata.PackageNotFoundError:
        return "unknown"


class RunCounts:
    """Runs processed and failed by this worker's job processes: two integers in memory shared
    across the pool's fork (made before it), added to by whichever process ran the job."""

    def __init__(self) -> None:
        self._values = multiprocessing.RawArray("q", 2)
        self._lock = multiprocessing.Lock()

    def add(self, outcome: JobState) -> None:
        with self._lock:
            self._values[0] += 1
            if outcome in FAILED_OUTCOMES:
                self._values[1] += 1

    def read(self) -> tuple[int, int]:
        with self._lock:
            return self._values[0], self._values[1]


class Presence:
    def __init__(self, settings: Settings, job_type: JobType, client: Any, *, pool: str, concurrency: int) -> None:
        """`pool` and `concurrency`: what the worker runs with (its job type may choose other
        than OFFLOAD_WORKER_POOL, as the LLM worker's HTTP backend does)."""
        self.settings = settings
        self.identity = WorkerIdentity(
            id=node_name(job_type), type=job_type.value, host=socket.gethostname(), pid=os.getpid(),
            pool=pool, concurrency=concurrency, version=offload_version(),
            started_at=time.time(), queues=tuple(consumed_by(job_type)))
        self.counts = RunCounts()
        self.writer = RegistryWriter(client, settings, self.identity)
        self._client = client
        self._started = time.monotonic()
        self._last_pulse: float | None = None
        self._beat_failing = False
        # With the solo pool the loop runs the jobs themselves: a job may hold it up to its hard
        # time limit before the loop counts as stalled.
        held = max(settings.time_limits(t)[1] for t in (job_type, JobType.PROBE)) if pool == "solo" else 0
        self.liveness_window = settings.worker_liveness_seconds + held

    # -- from the consumer loop ------------------------------------------------------------

    def pulse(self) -> None:
        self._last_pulse = time.monotonic()

    def beat(self) -> None:
        self.pulse()
        processed, failed = self.counts.read()
        current = sorted({str(r.args[0]) for r in list(worker_state.active_requests) if r.args})
        try:
            self.writer.beat(current_jobs=current, processed=processed, failed=failed)
        except (RedisError, OSError) as exc:
            if not self._beat_failing:  # once per outage, not every beat
                log.warning("worker registry: heartbeat not written (%s); retrying every %g s", exc,
                            self.settings.worker_heartbeat_seconds)
            self._beat_failing = True
        else:
            if self._beat_failing:
                log.info("worker registry: heartbeat written again")
            self._beat_failing = False

    def leave(self) -> None:
        try:
            self.writer.leave()
        except (RedisError, OSError) as exc:
            log.warning("worker registry: entry not removed at stop (%s); it will be listed as lost", exc)

    # -- from the health port's thread -----------------------------------------------------

    def stalled_for(self) -> float:
        """Seconds since the consumer loop last made progress (since start, before its first)."""
        return time.monotonic() - (self._last_pulse if self._last_pulse is not None else self._started)

    def redis_answers(self) -> bool:
        try:
            return bool(self._client.ping())
        except (RedisError, OSError):
            return False

    def liveness(self) -> tuple[bool, str]:
        """(alive, why). A loop that waits for Redis is not hung: a restart would not bring Redis
        back, so the worker stays live (its readiness says it is not ready)."""
        stalled = self.stalled_for()
        if stalled <= self.liveness_window:
            return True, "the consumer loop is running"
        if not self.redis_answers():
            return True, f"the consumer loop has waited {stalled:.0f} s for Redis, which does not answer"
        return False, (f"the consumer loop has made no progress for {stalled:.0f} s (limit "
                       f"{self.liveness_window:g} s, OFFLOAD_WORKER_LIVENESS_SECONDS) while Redis answers")

    # -- Celery ----------------------------------------------------------------------------

    def consumer_step(self) -> type[bootsteps.StartStopStep]:
        """A consumer bootstep putting the pulse and the beat on the consumer loop's timer."""
        presence, beat_seconds = self, self.settings.worker_heartbeat_seconds

        class OffloadPresence(bootsteps.StartStopStep):
            requires = ("celery.worker.consumer.tasks:Tasks",)

            def __init__(self, c: Any, **kwargs: Any) -> None:
                super().__init__(c, **kwargs)
                self.entries: list[Any] = []

            def start(self, c: Any) -> None:
                self._cancel(c)
                self.entries = [c.timer.call_repeatedly(PULSE_SECONDS, presence.pulse),
                                c.timer.call_repeatedly(beat_seconds, presence.beat)]
                presence.beat()

            def stop(self, c: Any) -> None:
                self._cancel(c)

            def shutdown(self, c: Any) -> None:
                self._cancel(c)
                presence.leave()

            def _cancel(self, c: Any) -> None:
                for entry in self.entries:
                    c.timer.cancel(entry)
                self.entries = []

        return OffloadPresence
