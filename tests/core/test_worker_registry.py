"""The worker registry and the throughput snapshots against a real Redis: what a beat writes, when
an entry is lost (once, whoever sweeps), how the index stays bounded, and per-minute deltas."""

from __future__ import annotations

import asyncio
import json

import redis
import redis.asyncio as aioredis

from offload_core.fleet.registry import (
    LIVE,
    LOST,
    RegistryWriter,
    WorkerIdentity,
    live_by_type,
    read_workers,
    sweep_lost,
)
from offload_core.jobs import keys, scripts, throughput
from offload_core.settings import Settings

NOW = 1_800_000_000.0


def settings(url: str) -> Settings:
    return Settings(redis_url=url, worker_heartbeat_seconds=5, worker_lost_after_seconds=30,
                    worker_lost_retention_seconds=600)


def identity(n: int, job_type: str = "ocr") -> WorkerIdentity:
    return WorkerIdentity(id=f"{job_type}-{n}@host-{n}", type=job_type, host=f"host-{n}", pid=100 + n, pool="prefork",
                          concurrency=2, version="1.2.3", started_at=NOW - 100, queues=(f"{job_type}.high", "probe.high"))


def read(url: str, s: Settings, now: float) -> list[dict]:
    async def go() -> list[dict]:
        client = aioredis.Redis.from_url(url)
        try:
            return await read_workers(client, s, now=now)
        finally:
            await client.aclose()
    return asyncio.run(go())


def sweep(url: str, s: Settings, now: float) -> list[str]:
    async def go() -> list[str]:
        client = aioredis.Redis.from_url(url)
        try:
            return await sweep_lost(client, s, now=now)
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_a_beat_writes_the_entry_a_reader_lists_as_live(redis_url: str):
    s, client = settings(redis_url), redis.Redis.from_url(redis_url)
    writer = RegistryWriter(client, s, identity(1))
    writer.beat(current_jobs=["job-a", "job-b"], processed=7, failed=2, now=NOW)
    [entry] = read(redis_url, s, NOW + 1)
    assert entry["state"] == LIVE and entry["id"] == "ocr-1@host-1" and entry["pid"] == 101
    assert (entry["pool"], entry["concurrency"], entry["version"]) == ("prefork", 2, "1.2.3")
    assert entry["current_jobs"] == ["job-a", "job-b"] and entry["running"] == 2
    assert (entry["processed"], entry["failed"]) == (7, 2)
    assert entry["queues"] == ["ocr.high", "probe.high"] and entry["seconds_since_seen"] == 1.0
    # The entry expires by itself a retention after its last beat.
    assert 600 < client.ttl(keys.worker("ocr-1@host-1")) <= 631


def test_a_silent_worker_is_lost_once_whoever_sweeps_then_forgotten_after_the_retention(redis_url: str):
    s, client = settings(redis_url), redis.Redis.from_url(redis_url)
    RegistryWriter(client, s, identity(1)).beat(current_jobs=[], processed=0, failed=0, now=NOW)
    RegistryWriter(client, s, identity(2, "llm")).beat(current_jobs=[], processed=0, failed=0, now=NOW + 20)
    assert sweep(redis_url, s, NOW + 29) == []  # both heard from within 30 s
    # Two status replicas sweep: the lost worker is counted by one of them only.
    assert sweep(redis_url, s, NOW + 31) == ["ocr"]
    assert sweep(redis_url, s, NOW + 32) == []
    listed = {w["id"]: w for w in read(redis_url, s, NOW + 32)}
    assert listed["ocr-1@host-1"]["state"] == LOST and listed["ocr-1@host-1"]["lost_at"]
    assert listed["llm-2@host-2"]["state"] == LIVE
    assert live_by_type(list(listed.values()), ["ocr", "llm"]) == {"ocr": 0, "llm": 1}
    # The second one goes quiet too: only it is newly lost.
    assert sweep(redis_url, s, NOW + 60) == ["llm"]
    # Past the retention the lost ones leave the index.
    sweep(redis_url, s, NOW + 30 + 600 + 21)
    assert client.zcard(keys.WORKERS) == 0 and read(redis_url, s, NOW + 700) == []


def test_a_worker_heard_from_again_is_live_again(redis_url: str):
    s, client = settings(redis_url), redis.Redis.from_url(redis_url)
    writer = RegistryWriter(client, s, identity(1))
    writer.beat(current_jobs=[], processed=0, failed=0, now=NOW)
    assert sweep(redis_url, s, NOW + 40) == ["ocr"]
    writer.beat(current_jobs=[], processed=1, failed=0, now=NOW + 45)  # it was only paused
    [entry] = read(redis_url, s, NOW + 46)
    assert entry["state"] == LIVE and entry["lost_at"] is None


def test_a_clean_stop_removes_the_entry_so_it_is_never_lost(redis_url: str):
    s, client = settings(redis_url), redis.Redis.from_url(redis_url)
    writer = RegistryWriter(client, s, identity(1))
    writer.beat(current_jobs=[], processed=3, failed=0, now=NOW)
    writer.leave()
    assert read(redis_url, s, NOW + 1) == [] and sweep(redis_url, s, NOW + 60) == []


def test_the_index_keeps_at_most_its_cap_of_the_most_recently_seen(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    beat = scripts.WORKER_BEAT.register(client)
    for n in range(12):
        beat(workers_key=keys.WORKERS, worker_key=keys.worker(f"w{n}"), worker_id=f"w{n}", now=repr(NOW + n),
             ttl=60, forget_before=repr(NOW - 1000), max_entries=5, extra_args=["type", "ocr"])
    assert [m.decode() for m in client.zrange(keys.WORKERS, 0, -1)] == [f"w{n}" for n in range(7, 12)]


def test_throughput_is_the_difference_between_minute_snapshots(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    minute = int(NOW // 60)

    async def go() -> dict:
        r = aioredis.Redis.from_url(redis_url)
        try:
            client.hset(keys.COUNTERS, mapping={"ocr:succeeded": 10, "ocr:failed": 1, "llm:succeeded": 4})
            assert await throughput.snapshot(r, now=(minute - 2) * 60 + 3)
            assert not await throughput.snapshot(r, now=(minute - 2) * 60 + 8)  # one per minute
            client.hset(keys.COUNTERS, mapping={"ocr:succeeded": 15, "ocr:failed": 3, "ocr:dead": 1})
            await throughput.snapshot(r, now=(minute - 1) * 60 + 1)
            client.hset(keys.COUNTERS, mapping={"ocr:succeeded": 16, "llm:succeeded": 9, "llm:retried": 2})
            # No snapshot this minute (no status service ran): the minute before it cannot be told.
            return await throughput.series(r, ["ocr", "llm"], minutes=4, now=minute * 60 + 30)
        finally:
            await r.aclose()

    out = asyncio.run(go())
    points = out["points"]
    assert [p["partial"] for p in points] == [False, False, False, True]
    assert points[0]["types"] is None  # before the first snapshot
    assert points[1]["types"]["ocr"] == {"succeeded": 5, "failed": 2, "dead": 1, "cancelled": 0, "retried": 0}
    assert points[1]["types"]["llm"]["succeeded"] == 0
    assert points[2]["types"] is None  # minute - 1 has a snapshot but the current minute has none
    assert points[3]["types"] is None
    assert out["totals"]["ocr"]["succeeded"] == 5
    assert json.loads(client.get(keys.stats(minute - 2))) == {"ocr:succeeded": 10, "ocr:failed": 1, "llm:succeeded": 4}
    assert 0 < client.ttl(keys.stats(minute - 2)) <= throughput.SNAPSHOT_TTL_SECONDS
