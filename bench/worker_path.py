"""Worker path: jobs/s from queued to recorded result, 2 worker processes, no compute.

Each round, for each system in turn: empty the Redis, queue N jobs with the system's own
client, start its workers (2 processes), and follow the backlog. The rate is taken over a
window that starts once the workers are warm (the first few percent of jobs done) and ends after
`window` seconds or when 10% are left, so start-up and the drained tail are not counted. The
workers are then killed and the results the system recorded are counted (a system that
dropped its results would show here).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from .offload import OffloadEnv, probe_job, succeeded
from .procs import VENV_BIN, Proc, RedisServer
from .stats import summary


@dataclass
class System:
    name: str
    label: str
    python: str  # the interpreter whose libraries this system uses
    workers: Callable[[str, Path], list[Proc]]
    remaining: Callable[[redis.Redis, int], int]  # jobs queued or running (not yet recorded)
    recorded: Callable[[redis.Redis], int]  # results recorded
    prefill: Callable[[str, int], None]
    first_n: int = 3000
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _count(r: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in r.scan_iter(match=pattern, count=1000))


def _run_prefill(python: str, module: str, url: str, n: int) -> None:
    import subprocess

    from .procs import REPO

    env = {"BENCH_REDIS_URL": url, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    subprocess.run([python, "-m", f"bench.systems.{module}", "prefill", str(n)], check=True, cwd=REPO, env=env,
                   timeout=600)


def _peer_env(url: str, **extra: str) -> dict[str, str]:
    return {"BENCH_REDIS_URL": url, **extra}


def offload_system(log_dir: Path, redis_url: str) -> System:
    env = OffloadEnv(redis_url, log_dir)

    def prefill(url: str, n: int) -> None:
        env.submit([probe_job() for _ in range(n)])

    return System(
        "offload", "Offload (2 job processes)", sys.executable,
        workers=lambda url, d: [env.probe_worker(concurrency=2)],
        remaining=lambda r, n: n - succeeded(r), recorded=succeeded, prefill=prefill,
        notes="the product's OCR worker running probe jobs of no duration; claim, lease, events, "
              "result record, metrics, tracing hooks, JSON logs")


def celery_system(mode: str) -> System:
    python = sys.executable  # the workspace's own Celery, kombu and redis-py: the same code as Offload's

    def workers(url: str, log_dir: Path) -> list[Proc]:
        argv = [str(VENV_BIN / "celery"), "-A", "bench.systems.celery_app", "worker", "--concurrency=2",
                "--pool=prefork", "-Q", "bench", "--loglevel=WARNING"]
        if mode == "guaranteed":
            argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        return [Proc(f"celery-{mode}", argv, _peer_env(url, BENCH_CELERY_MODE=mode), log_dir)]

    def prefill(url: str, n: int) -> None:
        import subprocess

        from .procs import REPO

        subprocess.run([python, "-m", "bench.systems.celery_app", "prefill", str(n)], check=True, cwd=REPO,
                       env=_full_env(url, BENCH_CELERY_MODE=mode), timeout=600)

    label = ("Celery, same guarantees (acks late, prefetch 1)" if mode == "guaranteed"
             else "Celery, defaults (acks early, prefetch 4)")
    return System(
        f"celery-{mode}", label, python, workers=workers,
        remaining=lambda r, n: int(r.llen("bench")) + int(r.hlen("unacked")),
        recorded=lambda r: _count(r, "celery-task-meta-*"), prefill=prefill,
        notes="prefork, 2 processes, redis result backend")


def _full_env(url: str, **extra: str) -> dict[str, str]:
    import os

    from .procs import REPO

    return {**os.environ, "BENCH_REDIS_URL": url, "PYTHONPATH": str(REPO), **extra}


def peer_systems(peers_bin: Path) -> list[System]:
    py = str(peers_bin / "python")

    def rq_workers(url: str, log_dir: Path) -> list[Proc]:
        return [Proc(f"rq-{i}", [str(peers_bin / "rq"), "worker", "-u", url, "--name", f"bench-{i}", "-q", "bench"],
                     _peer_env(url), log_dir) for i in (1, 2)]

    def arq_workers(url: str, log_dir: Path) -> list[Proc]:
        return [Proc(f"arq-{i}", [str(peers_bin / "arq"), "bench.systems.arq_app.WorkerSettings"],
                     _peer_env(url), log_dir) for i in (1, 2)]

    def dramatiq_workers(url: str, log_dir: Path) -> list[Proc]:
        return [Proc("dramatiq", [str(peers_bin / "dramatiq"), "bench.systems.dramatiq_app", "--processes", "2",
                                  "--threads", "1"], _peer_env(url), log_dir)]

    def taskiq_workers(url: str, log_dir: Path) -> list[Proc]:
        return [Proc("taskiq", [str(peers_bin / "taskiq"), "worker", "bench.systems.taskiq_app:broker",
                                "--workers", "2"], _peer_env(url), log_dir)]

    def taskiq_remaining(r: redis.Redis, n: int) -> int:
        try:
            groups = r.xinfo_groups("bench")
        except redis.ResponseError:
            return n
        if not groups:
            return n
        g = groups[0]
        return int(g.get("lag") or 0) + int(g.get("pending") or 0)

    return [
        System("rq", "RQ (2 workers, fork per job)", py, rq_workers,
               remaining=lambda r, n: int(r.llen("rq:queue:bench")),
               recorded=lambda r: _count(r, "rq:results:*"),
               prefill=lambda url, n: _run_prefill(py, "rq_app", url, n), first_n=600,
               notes="default Worker: forks a work horse per job"),
        System("arq", "arq (2 processes, asyncio)", py, arq_workers,
               remaining=lambda r, n: int(r.zcard("arq:queue")),
               recorded=lambda r: _count(r, "arq:result:*"),
               prefill=lambda url, n: _run_prefill(py, "arq_app", url, n),
               notes="default max_jobs=10 per process"),
        System("dramatiq", "Dramatiq (2 processes x 1 thread)", py, dramatiq_workers,
               remaining=lambda r, n: int(r.hlen("dramatiq:bench.msgs")),
               # The results backend names a result by a digest of the message, with no prefix.
               recorded=lambda r: sum(1 for k in r.scan_iter(count=1000) if not k.startswith(b"dramatiq:")),
               prefill=lambda url, n: _run_prefill(py, "dramatiq_app", url, n),
               notes="Redis broker, Results middleware"),
        System("taskiq", "taskiq (2 processes, stream broker)", py, taskiq_workers,
               remaining=taskiq_remaining,
               recorded=lambda r: _count(r, "taskiq-result*"),
               prefill=lambda url, n: _run_prefill(py, "taskiq_app", url, n),
               notes="taskiq-redis RedisStreamBroker + RedisAsyncResultBackend"),
    ]


def measure_once(system: System, server: RedisServer, log_dir: Path, n: int, window: float) -> dict[str, Any]:
    url = server.url
    r = server.client()
    r.flushall()
    system.prefill(url, n)
    procs = system.workers(url, log_dir)
    for p in procs:
        p.launch()
    try:
        warm = n - max(20, int(n * 0.03))
        deadline = time.monotonic() + 120
        while True:
            left = system.remaining(r, n)
            if left <= warm:
                break
            for p in procs:
                p._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{system.name}: no progress ({left} of {n} left)")
            time.sleep(0.01)
        t0, left0 = time.perf_counter(), left
        stop_at = int(n * 0.1)
        while True:
            time.sleep(0.02)
            left = system.remaining(r, n)
            t = time.perf_counter()
            if left <= stop_at or t - t0 >= window:
                break
        rate = (left0 - left) / (t - t0)
    finally:
        for p in procs:
            p.kill()
    recorded = system.recorded(r)
    r.flushall()
    r.close()
    return {"rate": rate, "done_in_window": left0 - left, "window_s": t - t0, "recorded": recorded, "n": n}


def run(systems: list[System], server: RedisServer, log_dir: Path, rounds: int, window: float,
        n_cap: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    sizes = {s.name: min(n_cap, s.first_n) for s in systems}
    for rnd in range(rounds):
        # Interleaved: every system once per round, in an order rotated each round.
        order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
        for system in order:
            out = measure_once(system, server, log_dir, sizes[system.name], window)
            samples[system.name].append(out)
            print(f"  worker-path round {rnd + 1} {system.name}: {out['rate']:.0f} jobs/s "
                  f"({out['done_in_window']} in {out['window_s']:.1f}s, {out['recorded']} recorded)", flush=True)
            # Enough jobs for warm-up + the window at the rate just seen, within the cap.
            sizes[system.name] = max(200, min(n_cap, int(out["rate"] * (window + 2) * 1.3)))
    return {
        "systems": {
            s.name: {"label": s.label, "notes": s.notes,
                     "jobs_per_s": summary([x["rate"] for x in samples[s.name]]),
                     "recorded": [x["recorded"] for x in samples[s.name]],
                     "done_in_window": [x["done_in_window"] for x in samples[s.name]]}
            for s in systems
        },
        "window_s": window,
    }
