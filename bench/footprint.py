"""Footprint: resident memory of every service process, idle and under load; image sizes.

Idle: each service started alone, after its first request or job (imports done, model loaded).
Loaded: the highest RSS seen while it works (gateway under wrk; a worker running jobs), sampled
every 100 ms. A Celery worker is its main process plus its job processes; both are shown.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from offload_core.types import JobType

from .offload import LLM_PAYLOAD, OffloadEnv, probe_job, succeeded
from .procs import Proc, RedisServer, tree_rss_mib, wait_for
from .submit import wrk


class PeakRss:
    def __init__(self, proc: Proc) -> None:
        self.proc, self.peak = proc, {"total": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = tree_rss_mib(self.proc.pid)
            if now["total"] > self.peak["total"]:
                self.peak = now

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def image_sizes() -> dict[str, Any]:
    for engine in ("podman", "docker"):
        if shutil.which(engine) is None:
            continue
        out = subprocess.run([engine, "images", "--format", "json"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            continue
        try:
            rows = json.loads(out.stdout or "[]")
        except ValueError:
            continue
        sizes = {}
        for row in rows:
            for name in row.get("Names") or row.get("names") or []:
                if "offload-" in name and "pybase" not in name:
                    sizes[name] = round(float(row.get("Size") or row.get("size") or 0) / 2**20, 1)
        if sizes:
            return {"engine": engine, "mib": sizes}
    return {"engine": None, "mib": {}, "note": "no Offload images on this machine (make images builds them)"}


def redis_per_finished_job(server: RedisServer, log_dir: Path, *, jobs: int) -> dict[str, Any]:
    """Redis memory a finished small LLM job keeps for its retention: `jobs` chat completions of
    16 tokens submitted over HTTP as the client sends them (with an Idempotency-Key), run by the
    real LLM worker, measured once their event streams' grace has passed (2 s here; 120 s by
    default), as the keyspace holds them for the rest of the retention."""
    env = OffloadEnv(server.url, log_dir)
    r = server.client()
    r.flushall()
    extra = {"OFFLOAD_EVENTS_GRACE_SECONDS": "2", "OFFLOAD_LLM_BACKEND": "llamacpp", "OFFLOAD_LLM_THREADS": "1"}
    gateway = env.gateway(name="offload-gateway-per-job", **extra).start()
    worker = env.worker("llm", concurrency=1, **extra).start()
    headers = {"Authorization": f"Bearer {env.api_key}", "Content-Type": "application/json"}
    try:
        with httpx.Client(timeout=30) as http:
            def submit(n: int) -> None:
                for i in range(n):
                    http.post(f"{gateway.url}/v1/jobs/llm", content=LLM_PAYLOAD,
                              headers={**headers, "Idempotency-Key": f"footprint-{time.time_ns()}-{i}"}).raise_for_status()

            submit(1)  # warm-up: scripts loaded, tenant keys made
            wait_for(lambda: succeeded(r, JobType.LLM) >= 1, 120, "the warm-up job")
            time.sleep(3)
            before = int(r.info("memory")["used_memory"])
            keys_before = r.dbsize()
            submit(jobs)
            wait_for(lambda: succeeded(r, JobType.LLM) >= jobs + 1, 600, "the jobs")
            time.sleep(3)  # past the event streams' grace
            after = int(r.info("memory")["used_memory"])
            keys_after = r.dbsize()
            sample = r.zrange("offload:tenant:bench:jobs", -1, -1)[0].decode()
            record = r.memory_usage(f"offload:job:{sample}") or 0
    finally:
        worker.kill()
        gateway.stop()
        r.flushall()
    return {"jobs": jobs, "bytes_per_job": (after - before) / jobs, "keys_per_job": (keys_after - keys_before) / jobs,
            "record_bytes": record}


def run(server: RedisServer, log_dir: Path, *, load_seconds: float, jobs: int, ocr_pages: bytes) -> dict[str, Any]:
    env = OffloadEnv(server.url, log_dir)
    r = server.client()
    r.flushall()
    out: dict[str, Any] = {}
    gateway = env.gateway(name="offload-gateway-footprint").start()
    status = env.status().start()
    try:
        headers = {"Authorization": f"Bearer {env.api_key}"}
        httpx.post(f"{gateway.url}/v1/jobs/llm", content=LLM_PAYLOAD, headers={**headers, "Content-Type": "application/json"})
        httpx.get(f"{status.url}/v1/queues", headers=headers)
        out["offload-gateway"] = {"idle": gateway.rss_mib()}
        out["offload-status"] = {"idle": status.rss_mib()}
        with PeakRss(gateway) as g:
            wrk(gateway.url, env.api_key, seconds=load_seconds, connections=32)
        out["offload-gateway"]["loaded"] = g.peak
        with PeakRss(status) as s:
            for _ in range(int(load_seconds * 50)):
                httpx.get(f"{status.url}/v1/queues", headers=headers)
        out["offload-status"]["loaded"] = s.peak
    finally:
        gateway.stop()
        status.stop()
    r.flushall()
    # Workers at the chart's default concurrency for the CPU-bound OCR worker (1 process), and 2.
    probe = env.probe_worker(concurrency=2, name="offload-probe-worker-footprint").start()
    try:
        env.submit([probe_job()])
        time.sleep(1)
        out["offload-worker (probe jobs, 2 job processes)"] = {"idle": probe.rss_mib()}
        with PeakRss(probe) as n:
            env.submit([probe_job() for _ in range(jobs)])
            wait_for(lambda: succeeded(r) >= jobs + 1, 120, "jobs")
        out["offload-worker (probe jobs, 2 job processes)"]["loaded"] = n.peak
    finally:
        probe.kill()
    r.flushall()
    from .ocr import _ocr_job

    ocr = env.worker("ocr", concurrency=1).start()
    try:
        out["offload-worker-ocr (1 job process)"] = {"idle": ocr.rss_mib()}
        with PeakRss(ocr) as o:
            env.submit([_ocr_job(ocr_pages, env.settings())])
            wait_for(lambda: succeeded(r, JobType.OCR) >= 1, 300, "OCR job")
        out["offload-worker-ocr (1 job process)"]["loaded"] = o.peak
    finally:
        ocr.kill()
    r.flushall()
    out["_redis_per_finished_llm_job"] = redis_per_finished_job(server, log_dir, jobs=min(jobs, 100))
    out["images"] = image_sizes()
    return out
