"""Gauges the status service reads from Redis, refreshed in the background (`refresh_forever`).

    offload_queue_depth{queue}                 messages waiting (the list length KEDA reads)
    offload_queue_oldest_age_seconds{queue}    age of the oldest waiting message (0 when empty)
    offload_jobs_running{type}                 jobs running now
    offload_dead_letters                       jobs in the dead-letter set
    offload_redis_used_memory_bytes            Redis's used memory (INFO memory)
    offload_redis_maxmemory_bytes              its maxmemory (0: none set)
    offload_batches_running                    batches not yet ended
    offload_batch_lines_in_flight              their line jobs submitted and not yet collected
    offload_workers_live{type}                 live worker processes in the registry (fleet/)
    offload_workers_lost_total{type}           workers found lost (no heartbeat for
                                               OFFLOAD_WORKER_LOST_AFTER_SECONDS), each counted once

The same refresh marks newly lost workers in the registry and takes the minute's snapshot of
the job counters (jobs/throughput.py).

A scrape reads the last values and never touches Redis: scrapes cost Redis nothing, however
often and by however many scrapers they come. The values are at most
`OFFLOAD_METRICS_REFRESH_SECONDS` old.

Only the status service exports these (it is the one that reads queues), so a sum over
services does not count a queue twice. With several status replicas, use max() over them.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from offload_core.batches.store import running_totals
from offload_core.errors import StoreUnavailable
from offload_core.fleet.registry import live_by_type, read_workers, sweep_lost
from offload_core.jobs import throughput
from offload_core.jobs.store import JobStore
from offload_core.types import WORKER_TYPES
from offload_core.web.redis_memory import read_memory

log = logging.getLogger("offload.queue_metrics")

# "livemostrecent": correct should the status service ever run as several processes.
QUEUE_DEPTH = Gauge("offload_queue_depth", "Messages waiting in a queue", ["queue"],
                    multiprocess_mode="livemostrecent")
QUEUE_OLDEST_AGE = Gauge("offload_queue_oldest_age_seconds", "Age of the oldest message waiting in a queue",
                         ["queue"], multiprocess_mode="livemostrecent")
JOBS_RUNNING = Gauge("offload_jobs_running", "Jobs running now", ["type"], multiprocess_mode="livemostrecent")
DEAD_LETTERS = Gauge("offload_dead_letters", "Jobs in the dead-letter set", multiprocess_mode="livemostrecent")
REDIS_USED_MEMORY = Gauge("offload_redis_used_memory_bytes", "Memory Redis uses (INFO memory used_memory)",
                          multiprocess_mode="livemostrecent")
BATCHES_RUNNING = Gauge("offload_batches_running", "Batches not yet ended", multiprocess_mode="livemostrecent")
BATCH_LINES_IN_FLIGHT = Gauge("offload_batch_lines_in_flight", "Line jobs of running batches submitted and not "
                              "yet collected", multiprocess_mode="livemostrecent")
REDIS_MAXMEMORY = Gauge("offload_redis_maxmemory_bytes", "Redis's maxmemory (0: no limit set)",
                        multiprocess_mode="livemostrecent")
WORKERS_LIVE = Gauge("offload_workers_live", "Live worker processes in the registry, per job type", ["type"],
                     multiprocess_mode="livemostrecent")
WORKERS_LOST = Counter("offload_workers_lost_total", "Worker processes found lost (heartbeat stopped)", ["type"])
for _t in WORKER_TYPES:
    WORKERS_LOST.labels(type=_t.value)  # 0, not absent, until a worker is lost


async def refresh(store: JobStore) -> None:
    """Set the gauges from the store; when it cannot be read, report no value rather than a stale one."""
    try:
        stats = await store.queue_stats()
        async with asyncio.timeout(5):
            memory = await read_memory(store.redis)
            batches, lines = await running_totals(store.redis)
    except (StoreUnavailable, RedisError, OSError, TimeoutError):
        for gauge in (QUEUE_DEPTH, QUEUE_OLDEST_AGE, JOBS_RUNNING):
            gauge.clear()
        for gauge in (DEAD_LETTERS, REDIS_USED_MEMORY, REDIS_MAXMEMORY, BATCHES_RUNNING, BATCH_LINES_IN_FLIGHT):
            gauge.set(float("nan"))
        return
    for queue, info in stats["queues"].items():
        QUEUE_DEPTH.labels(queue=queue).set(info["depth"])
        QUEUE_OLDEST_AGE.labels(queue=queue).set(info["oldest_age_seconds"] or 0)
    for job_type, running in stats["running_by_type"].items():
        JOBS_RUNNING.labels(type=job_type).set(running)
    DEAD_LETTERS.set(stats["dead"])
    REDIS_USED_MEMORY.set(memory.used_bytes)
    REDIS_MAXMEMORY.set(memory.max_bytes)
    BATCHES_RUNNING.set(batches)
    BATCH_LINES_IN_FLIGHT.set(lines)
    await refresh_fleet(store)


async def refresh_fleet(store: JobStore) -> None:
    """The worker gauges, lost workers marked and counted, and the minute's counter snapshot."""
    settings = store.settings
    try:
        async with asyncio.timeout(5):
            for job_type in await sweep_lost(store.redis, settings):
                WORKERS_LOST.labels(type=job_type).inc()
            workers = await read_workers(store.redis, settings)
            await throughput.snapshot(store.redis)
    except (RedisError, OSError, TimeoutError):
        WORKERS_LIVE.clear()
        return
    for job_type, live in live_by_type(workers, [t.value for t in WORKER_TYPES]).items():
        WORKERS_LIVE.labels(type=job_type).set(live)


async def refresh_forever(store: JobStore, interval_seconds: float) -> None:
    while True:
        await refresh(store)
        await asyncio.sleep(interval_seconds)
