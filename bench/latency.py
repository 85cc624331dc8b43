"""Queue latency: enqueue -> start with idle workers, Offload against raw Celery (same
guarantees); and priority: how soon a `high` job starts behind a backlog of `low` ones.

Offload's figures come from the job record (`queued_at` is stamped by the submit before its
script runs, `started_at` by the worker's claim); Celery's from the time taken before
`apply_async` and the time the task body saw when it started. Same clock, same machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

from offload_core.jobs import keys
from offload_core.jobs.store import JobStore, connect
from offload_core.types import Priority

from .offload import OffloadEnv, probe_job
from .procs import VENV_BIN, Proc, RedisServer
from .stats import percentile, summary


async def _start_latency(redis, job_id: str) -> float:
    """Seconds from queued to started, read from the job's record once it has succeeded."""
    while True:
        state, queued, started = await redis.hmget(keys.job(job_id), "state", "queued_at", "started_at")
        if state == b"succeeded":
            return float(started) - float(queued)
        await asyncio.sleep(0.002)


async def _offload_samples(env: OffloadEnv, count: int) -> list[float]:
    settings = env.settings()
    redis = connect(settings)
    store = JobStore(redis, settings)
    out: list[float] = []
    try:
        for _ in range(count):
            outcome = await store.submit(probe_job())
            out.append(await _start_latency(redis, outcome.job_id))
            await asyncio.sleep(random.uniform(0.01, 0.03))  # the workers are idle again
    finally:
        await redis.aclose()
    return out


def _celery_samples(count: int) -> list[float]:
    from .systems import celery_app

    out: list[float] = []
    for _ in range(count):
        t0 = time.time()
        started = celery_app.started.delay().get(timeout=30)
        out.append(started - t0)
        time.sleep(random.uniform(0.01, 0.03))
    return out


def _figure(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(samples, 50) * 1000, "p99_ms": percentile(samples, 99) * 1000,
            "n": len(samples)}


def queue_latency(server: RedisServer, log_dir: Path, *, rounds: int, per_round: int) -> dict[str, Any]:
    env = OffloadEnv(server.url, log_dir)
    r = server.client()
    r.flushall()
    os.environ.update(BENCH_REDIS_URL=server.url, BENCH_CELERY_MODE="guaranteed")
    import importlib

    from .systems import celery_app

    importlib.reload(celery_app)
    worker = env.probe_worker(concurrency=2, name="offload-probe-worker-latency").start()
    celery = Proc("celery-latency", [str(VENV_BIN / "celery"), "-A", "bench.systems.celery_app", "worker",
                                     "--concurrency=2", "--pool=prefork", "-Q", "bench", "--loglevel=INFO",
                                     "--without-gossip", "--without-mingle", "--without-heartbeat"],
                  {"BENCH_REDIS_URL": server.url, "BENCH_CELERY_MODE": "guaranteed"}, log_dir,
                  ready_log=" ready.").start()
    rounds_out: dict[str, list[dict[str, float]]] = {"offload": [], "celery": []}
    try:
        asyncio.run(_offload_samples(env, 5))  # warm: connections, scripts, first-job imports
        _celery_samples(5)
        for rnd in range(rounds):
            for name in (["offload", "celery"] if rnd % 2 == 0 else ["celery", "offload"]):
                samples = asyncio.run(_offload_samples(env, per_round)) if name == "offload" else _celery_samples(per_round)
                rounds_out[name].append(_figure(samples))
                print(f"  queue latency round {rnd + 1} {name}: p50 {rounds_out[name][-1]['p50_ms']:.2f} ms "
                      f"p99 {rounds_out[name][-1]['p99_ms']:.2f} ms", flush=True)
    finally:
        worker.kill()
        celery.kill()
        celery_app.app.close()
        r.flushall()
    out = {name: {"p50_ms": summary([x["p50_ms"] for x in xs]), "p99_ms": summary([x["p99_ms"] for x in xs])}
           for name, xs in rounds_out.items()}
    out["ratio_p50"] = summary([o["p50_ms"] / c["p50_ms"] for o, c in zip(rounds_out["offload"], rounds_out["celery"])])
    out["per_round"] = per_round
    return out


async def _priority(env: OffloadEnv, backlog: int, job_seconds: float, probes: int) -> dict[str, Any]:
    settings = env.settings()
    redis = connect(settings, max_connections=64)
    store = JobStore(redis, settings)
    try:
        lows: list[str] = []
        for start in range(0, backlog, 64):
            outs = await asyncio.gather(*(store.submit(probe_job(Priority.LOW, job_seconds))
                                          for _ in range(min(64, backlog - start))))
            lows.extend(o.job_id for o in outs)
        latencies: list[float] = []
        depths: list[int] = []
        for _ in range(probes):
            await asyncio.sleep(0.3)
            depths.append(int(await redis.llen("probe.low")))
            outcome = await store.submit(probe_job(Priority.HIGH))
            latencies.append(await _start_latency(redis, outcome.job_id))
        durations = []
        for jid in lows[:400]:
            state, started, finished = await redis.hmget(keys.job(jid), "state", "started_at", "finished_at")
            if state == b"succeeded":
                durations.append(float(finished) - float(started))
    finally:
        await redis.aclose()
    return {"latencies": latencies, "depths": depths, "durations": durations}


def priority(server: RedisServer, log_dir: Path, *, backlog: int, job_seconds: float, probes: int) -> dict[str, Any]:
    env = OffloadEnv(server.url, log_dir)
    r = server.client()
    r.flushall()
    worker = env.probe_worker(concurrency=2, name="offload-probe-worker-priority").start()
    try:
        asyncio.run(_offload_samples(env, 3))
        raw = asyncio.run(_priority(env, backlog, job_seconds, probes))
    finally:
        worker.kill()
        r.flushall()
    job_ms = percentile(raw["durations"], 50) * 1000 if raw["durations"] else job_seconds * 1000
    latency = summary([x * 1000 for x in raw["latencies"]])
    return {"backlog": backlog, "low_job_ms": job_ms, "high_start_ms": latency,
            "low_depth_when_probed": raw["depths"], "budget_ms": job_ms + 20,
            "within_budget": latency["max"] <= job_ms + 20}
