"""Live events at scale: many SSE followers on one status process.

`followers` streams (one per queued job, one tenant) are opened on one `offload-status`; a
producer then appends one progress event to each job's stream every `event_interval` seconds
(as a worker's progress does; the event carries the time it was written), while another
tenant reads its own job (`GET /v1/jobs/{id}`) and the readiness probe every 50 ms. Measured:
the other tenant's read latency, the time from an event's write to its arrival at the
follower, and that every follower got every event of its job, once. The followers, the
producer and the reader share one asyncio process (on this 2-core machine: the same cores as
the status process and Redis).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from typing import Any

import httpx
import psutil
import redis.asyncio as aioredis

from offload_core.jobs import keys
from offload_core.jobs.store import NewJob
from offload_core.types import JobType, Priority

from .offload import PROBE_PAYLOAD, TENANT, OffloadEnv, probe_job
from .procs import RedisServer
from .stats import percentile, summary

READER = "reader"


class Follower:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.ids: list[str] = []
        self.delays: list[float] = []
        self.ready = asyncio.Event()

    async def run(self, port: int, key: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"GET /v1/jobs/{self.job_id}/events HTTP/1.1\r\nHost: status\r\nAuthorization: Bearer {key}\r\n"
                      "Accept: text/event-stream\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"stream refused: {head[:200]!r}")
        event_id, data = "", ""
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b"id:"):
                    event_id = line[3:].strip().decode()
                elif line.startswith(b"data:"):
                    data = line[5:].strip().decode()
                elif line in (b"\n", b"\r\n") and data:
                    body = json.loads(data)
                    if "sent" in body:
                        self.delays.append(time.time() - body["sent"])
                        self.ids.append(event_id)
                    else:
                        self.ready.set()  # the replayed `queued` state: this stream is live
                    data = ""
        finally:
            writer.close()


async def _produce(redis: aioredis.Redis, job_ids: list[str], seconds: float, interval: float,
                   sent: dict[str, list[str]]) -> None:
    """One progress event per job every `interval` s, spread evenly over the interval."""
    ticks = max(1, int(interval / 0.01))  # a write every 10 ms, to a share of the jobs
    step = interval / ticks
    groups = [job_ids[i::ticks] for i in range(ticks)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    tick = 0
    while loop.time() - start < seconds:
        pipe = redis.pipeline(transaction=False)
        group = groups[tick % ticks]
        for job_id in group:
            data = json.dumps({"current": tick, "total": 0, "message": "", "sent": time.time()})
            pipe.xadd(keys.events(job_id), {"kind": "progress", "data": data})
        for job_id, event_id in zip(group, await pipe.execute()):
            sent[job_id].append(event_id.decode())
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * step - loop.time()))


async def _read_other_tenant(status_url: str, key: str, job_id: str, seconds: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"read": [], "readyz": [], "errors": []}
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(3):  # the connection made and the route warm: not what is measured
            await http.get(f"{status_url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            for name, url, headers in (("read", f"{status_url}/v1/jobs/{job_id}", {"Authorization": f"Bearer {key}"}),
                                       ("readyz", f"{status_url}/readyz", {})):
                started = time.perf_counter()
                r = await http.get(url, headers=headers)
                out[name].append(time.perf_counter() - started)
                if r.status_code != 200:
                    out["errors"].append(r.status_code)
            await asyncio.sleep(0.05)
    return out


async def _round(env: OffloadEnv, status_port: int, reader_key: str, job_ids: list[str], reader_job: str,
                 seconds: float, interval: float, pid: int) -> dict[str, Any]:
    followers = [Follower(job_id) for job_id in job_ids]
    gate = asyncio.Semaphore(100)

    async def start(f: Follower) -> None:
        async with gate:
            task = asyncio.create_task(f.run(status_port, env.api_key))
            await asyncio.wait([task, asyncio.create_task(f.ready.wait())], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
            tasks.append(task)

    tasks: list[asyncio.Task] = []
    opened = time.monotonic()
    await asyncio.gather(*(start(f) for f in followers))
    open_seconds = time.monotonic() - opened
    redis = aioredis.Redis.from_url(env.redis_url)
    sent: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
    process = psutil.Process(pid)
    process.cpu_percent()
    try:
        _, other = await asyncio.gather(_produce(redis, job_ids, seconds, interval, sent),
                                        _read_other_tenant(f"http://127.0.0.1:{status_port}", reader_key,
                                                           reader_job, seconds))
        await asyncio.sleep(1)  # the last events on their way
        cpu = process.cpu_percent()
        redis_port = int(env.redis_url.rsplit(":", 1)[1].split("/")[0])
        held = sum(1 for c in process.net_connections(kind="tcp") if c.raddr and c.raddr.port == redis_port)
        rss = process.memory_info().rss / 2**20
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()
    delays = [d for f in followers for d in f.delays]
    exact = sum(1 for f in followers if f.ids == sent[f.job_id])
    return {"open_seconds": open_seconds, "delays": delays, "other": other, "exact": exact,
            "events_sent": sum(len(v) for v in sent.values()), "events_received": len(delays),
            "status_cpu_percent": cpu, "status_redis_connections": held, "status_rss_mib": rss}


def run(server: RedisServer, log_dir, *, rounds: int, followers: int, seconds: float,
        event_interval: float = 1.0) -> dict[str, Any]:
    env = OffloadEnv(server.url, log_dir)
    reader_key = secrets.token_urlsafe(24)
    status = env.status(OFFLOAD_API_KEYS=f"{TENANT}:{env.api_key},{READER}:{reader_key}",
                        OFFLOAD_SSE_MAX_STREAMS=str(followers), OFFLOAD_SSE_MAX_STREAMS_PER_TENANT=str(followers)).start()
    samples: dict[str, list[float]] = {k: [] for k in (
        "read_p50_ms", "read_p99_ms", "readyz_p99_ms", "delivery_p50_ms", "delivery_p99_ms", "delivery_max_ms",
        "open_seconds", "status_cpu_percent", "status_rss_mib")}
    checks: dict[str, list[int]] = {"followers_exact": [], "events_sent": [], "events_received": [],
                                    "errors": [], "status_redis_connections": []}
    try:
        for _ in range(rounds):
            server.client().flushall()
            job_ids = env.submit([probe_job() for _ in range(followers)])
            reader_job = env.submit([NewJob(type=JobType.PROBE, tenant=READER, priority=Priority.NORMAL,
                                            payload=PROBE_PAYLOAD, params={})])[0]
            random.shuffle(job_ids)
            out = asyncio.run(_round(env, status.port, reader_key, job_ids, reader_job, seconds, event_interval,
                                     status.pid))
            reads, delays = out["other"]["read"], out["delays"]
            samples["read_p50_ms"].append(percentile(reads, 50) * 1000)
            samples["read_p99_ms"].append(percentile(reads, 99) * 1000)
            samples["readyz_p99_ms"].append(percentile(out["other"]["readyz"], 99) * 1000)
            samples["delivery_p50_ms"].append(percentile(delays, 50) * 1000)
            samples["delivery_p99_ms"].append(percentile(delays, 99) * 1000)
            samples["delivery_max_ms"].append(max(delays) * 1000)
            samples["open_seconds"].append(out["open_seconds"])
            samples["status_cpu_percent"].append(out["status_cpu_percent"])
            samples["status_rss_mib"].append(out["status_rss_mib"])
            checks["followers_exact"].append(out["exact"])
            checks["events_sent"].append(out["events_sent"])
            checks["events_received"].append(out["events_received"])
            checks["errors"].append(len(out["other"]["errors"]))
            checks["status_redis_connections"].append(out["status_redis_connections"])
    finally:
        status.stop()
    return {"followers": followers, "seconds": seconds, "event_interval_s": event_interval,
            **{k: summary(v) for k, v in samples.items()}, **checks}
