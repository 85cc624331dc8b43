"""A chaos loop that SIGKILLs worker processes in the middle of jobs, and restarts them.

Victims are chosen from what Redis says is running: the job record names the process that
holds it (`worker` = host:pid:nonce), so every kill lands on a process that is running a job.
A job is killed at most `max_kills_per_job` times, below its attempts: one that is killed on
every attempt becomes `dead` by design (test_poison_jobs.py proves that). Two kinds of kill,
picked at random:

- `child`: only the job's process (OOM killer, segfault). The worker's parent sees its child
  die and gives the message back at once (`task_reject_on_worker_lost`).
- `worker`: the whole worker, parent and children (node lost, `kill -9` of the pod). Nobody
  gives the message back: kombu restores it after the visibility timeout. The worker is
  started again, as a Deployment would.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass

import psutil
import redis

from tests.support.platform import PlatformFactory
from tests.support.processes import Service


@dataclass(frozen=True)
class Kill:
    at: float  # wall clock, comparable with the job events' `at`
    job_id: str
    mode: str  # child | worker
    kind: str  # ocr | llm


class ChaosMonkey(threading.Thread):
    def __init__(self, factory: PlatformFactory, workers: list[tuple[str, Service]], client: redis.Redis, *,
                 every: tuple[float, float] = (2.0, 4.0), seed: int = 5, max_kills_per_job: int = 2) -> None:
        super().__init__(name="chaos", daemon=True)
        self.factory, self.client = factory, client
        self.workers = list(workers)  # (kind, service); replaced services are swapped in
        self.every = every
        self.max_kills_per_job = max_kills_per_job
        self.rng = random.Random(seed)
        self.kills: list[Kill] = []
        self.restarts = 0
        self.errors: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(120)

    def run(self) -> None:
        while not self._halt.wait(self.rng.uniform(*self.every)):
            try:
                self._strike()
            except Exception as exc:  # noqa: BLE001 - the loop reports, the test asserts
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _strike(self) -> None:
        running = [j.decode() for kind in ("ocr", "llm") for j in self.client.zrange(f"offload:running:{kind}", 0, -1)]
        self.rng.shuffle(running)
        hit = Counter(k.job_id for k in self.kills)
        for job_id in running:
            if hit[job_id] >= self.max_kills_per_job:
                continue  # chasing one job through every restart would only prove max_attempts
            holder = self.client.hget(f"offload:job:{job_id}", "worker")
            if not holder:
                continue
            pid = int(holder.decode().split(":")[1])
            index = self._worker_of(pid)
            if index is None:
                continue
            kind, service = self.workers[index]
            mode = self.rng.choice(("child", "worker"))
            at = time.time()
            if mode == "child":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            else:
                service.signal(signal.SIGKILL)  # the whole process group
                service.proc.wait(10)
            self.kills.append(Kill(at, job_id, mode, kind))
            if mode == "worker":
                self.workers[index] = (kind, self.factory.start_worker(kind, service.env))
                self.restarts += 1
            return

    def _worker_of(self, pid: int) -> int | None:
        """Index of the worker whose process tree holds `pid` (a pool child, or the worker itself)."""
        for index, (_, service) in enumerate(self.workers):
            if service.proc.poll() is not None:
                continue
            if pid == service.proc.pid:
                return index
            try:
                children = {c.pid for c in psutil.Process(service.proc.pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                continue
            if pid in children:
                return index
        return None


def recovery_seconds(kills: list[Kill], facts) -> dict[str, list[float]]:
    """Per kill mode: time from the kill to the job's next `running` event (its next attempt)."""
    out: dict[str, list[float]] = {"child": [], "worker": []}
    for kill in kills:
        job = facts.get(kill.job_id)
        if job is None:
            continue
        later = [t for s, t in zip(job.states, job.state_times) if s == "running" and t > kill.at]
        if later:
            out[kill.mode].append(later[0] - kill.at)
    return out
