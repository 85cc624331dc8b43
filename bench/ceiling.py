"""The physical ceiling: what the Redis itself can do, and how much of it one job spends.

- `redis-benchmark` LPUSH and RPOP ops/s on the benchmark's own redis-server (no pipelining),
- Redis commands per job, counted with MONITOR while jobs go through Offload (gateway submit
  over HTTP, then the worker path) and through raw Celery: `round_trips` are the requests a
  client sent (a MULTI...EXEC block counts once), `in_redis` adds the commands run inside
  Lua scripts,
- Redis CPU per job (INFO cpu, user + sys), which with one Redis core gives jobs/s at most.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis

from .offload import PROBE_PAYLOAD, OffloadEnv, succeeded
from .procs import RedisServer, wait_for
from .stats import summary


def redis_benchmark(server: RedisServer, requests: int, clients: int = 32) -> dict[str, float]:
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-t", "lpush,rpop",
                          "-n", str(requests), "-c", str(clients), "-q", "--csv"],
                         capture_output=True, text=True, timeout=300, check=True)
    rates: dict[str, float] = {}
    for line in out.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2 and cells[0] in ("LPUSH", "RPOP"):
            rates[cells[0].lower()] = float(cells[1])
    if set(rates) != {"lpush", "rpop"}:
        raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout[:500]}")
    return rates


class Monitor:
    """Counts the commands Redis runs, by client, while it is open."""

    def __init__(self, server: RedisServer, ignore_addrs: set[str]) -> None:
        self.client = server.client()
        self.ignore = ignore_addrs
        self.client_cmds: Counter[str] = Counter()
        self.lua_cmds: Counter[str] = Counter()
        self.round_trips = 0
        self._in_multi: set[str] = set()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.client.monitor() as m:
            self._ready.set()
            for cmd in m.listen():
                if self._stop.is_set():
                    return
                addr = cmd.get("client_address", "")
                if cmd.get("client_type") == "lua":
                    self.lua_cmds[cmd["command"].split(" ")[0].upper()] += 1
                    continue
                if f"{addr}:{cmd.get('client_port')}" in self.ignore:
                    continue
                name = cmd["command"].split(" ")[0].upper()
                key = f"{addr}:{cmd.get('client_port')}"
                self.client_cmds[name] += 1
                if name == "MULTI":
                    self._in_multi.add(key)
                elif name == "EXEC":
                    self._in_multi.discard(key)
                    self.round_trips += 1
                elif key not in self._in_multi:
                    self.round_trips += 1

    def __enter__(self) -> "Monitor":
        self._thread.start()
        self._ready.wait(5)
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        poke = redis.Redis(connection_pool=self.client.connection_pool)
        poke.ping()  # wakes the listener so it sees the stop flag
        self._thread.join(5)

    def per_job(self, jobs: int) -> dict[str, Any]:
        client_total = sum(self.client_cmds.values())
        return {"round_trips": self.round_trips / jobs, "client_commands": client_total / jobs,
                "in_redis": (client_total + sum(self.lua_cmds.values())) / jobs,
                "by_command": {k: round(v / jobs, 2) for k, v in self.client_cmds.most_common()}}


def _own_addr(r: redis.Redis) -> str:
    info = r.client_info()
    return info["addr"]


def _cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _idle_rate(server: RedisServer, ignore: set[str], seconds: float = 2.0) -> tuple[float, float]:
    """Round trips and commands per second Redis sees with nothing submitted (BRPOP timeouts,
    health checks): subtracted from a count taken over a span of the same traffic."""
    with Monitor(server, ignore) as idle:
        time.sleep(seconds)
    return idle.round_trips / seconds, sum(idle.client_cmds.values()) / seconds


def _per_job_net_of_idle(mon: "Monitor", jobs: int, idle_rate: tuple[float, float], span: float) -> dict[str, Any]:
    out = mon.per_job(jobs)
    out["round_trips"] = max(0.0, out["round_trips"] - idle_rate[0] * span / jobs)
    out["client_commands"] = max(0.0, out["client_commands"] - idle_rate[1] * span / jobs)
    return out


def offload_per_job(server: RedisServer, log_dir: Path, jobs: int) -> dict[str, Any]:
    """MONITOR over `jobs` (probes of no duration) submitted through the gateway, then run by a worker."""
    env = OffloadEnv(server.url, log_dir)
    r = server.client()
    r.flushall()
    gateway = env.gateway(name="offload-gateway-monitor").start()
    worker = env.probe_worker(concurrency=2, name="offload-probe-worker-monitor").start()
    try:
        headers = {"Authorization": f"Bearer {env.api_key}", "Content-Type": "application/json"}
        with httpx.Client(timeout=10) as http:
            http.post(f"{gateway.url}/v1/jobs/probe", content=PROBE_PAYLOAD, headers=headers).raise_for_status()
            wait_for(lambda: succeeded(r) == 1, 30, "warm-up job")
            time.sleep(1.5)  # idle traffic settles (health checks, first heartbeats)
            ignore = {_own_addr(r)}
            idle_rate = _idle_rate(server, ignore)
            with Monitor(server, ignore) as sub:
                started = time.monotonic()
                for _ in range(jobs):
                    http.post(f"{gateway.url}/v1/jobs/probe", content=PROBE_PAYLOAD, headers=headers).raise_for_status()
                wait_for(lambda: succeeded(r) == jobs + 1, 120, "jobs to finish")
                span = time.monotonic() - started
            # Redis CPU on a second batch, without MONITOR (which costs Redis CPU itself).
            time.sleep(0.5)
            cpu0 = _cpu(r)
            for _ in range(jobs):
                http.post(f"{gateway.url}/v1/jobs/probe", content=PROBE_PAYLOAD, headers=headers).raise_for_status()
            wait_for(lambda: succeeded(r) == 2 * jobs + 1, 120, "jobs to finish")
            cpu1 = _cpu(r)
    finally:
        worker.kill()
        gateway.stop()
    out = _per_job_net_of_idle(sub, jobs, idle_rate, span)
    out["redis_cpu_us"] = (cpu1 - cpu0) / jobs * 1e6
    out["idle_round_trips_per_s"] = idle_rate[0]
    r.flushall()
    return out


def celery_per_job(server: RedisServer, log_dir: Path, jobs: int) -> dict[str, Any]:
    """The same count for raw Celery (same guarantees): apply_async, then its worker."""
    import os

    from .procs import VENV_BIN, Proc

    r = server.client()
    r.flushall()
    env = {"BENCH_REDIS_URL": server.url, "BENCH_CELERY_MODE": "guaranteed"}
    worker = Proc("celery-monitor", [str(VENV_BIN / "celery"), "-A", "bench.systems.celery_app", "worker",
                                     "--concurrency=2", "--pool=prefork", "-Q", "bench", "--loglevel=INFO",
                                     "--without-gossip", "--without-mingle", "--without-heartbeat"],
                  env, log_dir, ready_log=" ready.").start()
    os.environ["BENCH_REDIS_URL"] = server.url
    os.environ["BENCH_CELERY_MODE"] = "guaranteed"
    import importlib

    from .systems import celery_app

    importlib.reload(celery_app)  # picks up this Redis
    try:
        celery_app.noop.delay({"warm": True}).get(timeout=30)
        time.sleep(1.5)
        ignore = {_own_addr(r)}
        idle_rate = _idle_rate(server, ignore)
        with Monitor(server, ignore) as mon:
            started = time.monotonic()
            results = [celery_app.noop.delay({"n": i}) for i in range(jobs)]
            for res in results:
                res.get(timeout=60)
            span = time.monotonic() - started
        time.sleep(0.5)
        cpu0 = _cpu(r)
        results = [celery_app.noop.delay({"n": i}) for i in range(jobs)]
        wait_for(lambda: sum(1 for _ in r.scan_iter(match="celery-task-meta-*", count=1000)) >= 2 * jobs + 1, 120,
                 "celery jobs to finish")
        cpu1 = _cpu(r)
    finally:
        worker.kill()
        celery_app.app.close()
    out = _per_job_net_of_idle(mon, jobs, idle_rate, span)
    out["redis_cpu_us"] = (cpu1 - cpu0) / jobs * 1e6
    out["note"] = "round trips include the caller's result.get() (GET, SUBSCRIBE, UNSUBSCRIBE per job)"
    r.flushall()
    return out


def run(server: RedisServer, log_dir: Path, *, rounds: int, requests: int, monitor_jobs: int) -> dict[str, Any]:
    samples = [redis_benchmark(server, requests) for _ in range(rounds)]
    server.client().flushall()
    offload = offload_per_job(server, log_dir, monitor_jobs)
    celery = celery_per_job(server, log_dir, monitor_jobs)
    lpush = summary([s["lpush"] for s in samples])
    rpop = summary([s["rpop"] for s in samples])
    ops = min(lpush["median"], rpop["median"])
    return {
        "redis_benchmark": {"lpush": lpush, "rpop": rpop, "clients": 32, "requests": requests},
        "offload_per_job": offload,
        "celery_per_job": celery,
        # Two bounds: Redis requests per second / requests per job, and one Redis core / CPU per job.
        "ceiling_jobs_per_s_round_trips": ops / max(offload["round_trips"], 1e-9),
        "ceiling_jobs_per_s_redis_cpu": 1e6 / max(offload["redis_cpu_us"], 1e-9),
    }
