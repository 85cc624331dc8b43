"""Time owned by Offload, measured at the shipped settings (visibility timeout 1 h, lease 30 s,
lease reaper every 5 s, delayed-set poll 0.25 s):

- recovery: a worker running a job is killed whole (SIGKILL of its process group: the main
  process and its job processes, as a lost node or an OOM-killed container), a replacement is
  started at once, and the time from the kill to the job's next `running` is taken, per kill;
- scheduled start: jobs scheduled over the next seconds, each one's start minus its `run_at`.

Probe jobs (the product's diagnostic type) on the product's own OCR worker.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from .offload import OffloadEnv
from .procs import RedisServer, wait_for
from .stats import summary


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class _Api:
    def __init__(self, env: OffloadEnv, gateway: str, status: str) -> None:
        self.http = httpx.Client(timeout=10, headers={"Authorization": f"Bearer {env.api_key}"})
        self.gateway, self.status = gateway, status

    def probe(self, **body: Any) -> str:
        r = self.http.post(f"{self.gateway}/v1/jobs/probe", json=body)
        r.raise_for_status()
        return r.json()["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"{self.status}/v1/jobs/{job_id}").raise_for_status().json()

    def cancel(self, job_id: str) -> None:
        self.http.delete(f"{self.gateway}/v1/jobs/{job_id}")


def run(server: RedisServer, log_dir: Path, *, kills: int, scheduled: int, spread_s: float) -> dict[str, Any]:
    env = OffloadEnv(server.url, log_dir)
    gateway, status = env.gateway(name="offload-gateway-recovery").start(), env.status().start()
    api = _Api(env, gateway.url, status.url)
    worker = env.probe_worker(concurrency=1, name="offload-worker-recovery").start()
    seconds: list[float] = []
    try:
        for n in range(kills):
            job_id = api.probe(sleep_seconds=120, steps=100)
            wait_for(lambda: api.job(job_id)["state"] == "running", 60, "the job to run")
            time.sleep(1 + n % 7)  # at a different point of the heartbeat cycle each time
            killed_at = time.time()
            worker.kill()
            worker = env.probe_worker(concurrency=1, name=f"offload-worker-recovery-{n}").start()
            wait_for(lambda: api.job(job_id)["attempts"] == 2 and api.job(job_id)["state"] == "running", 120,
                     "the job to run again")
            seconds.append(_ts(api.job(job_id)["started_at"]) - killed_at)
            print(f"  recovery {n + 1}: running again {seconds[-1]:.1f} s after the kill", flush=True)
            api.cancel(job_id)
            wait_for(lambda: api.job(job_id)["state"] == "cancelled", 30, "the job to stop")
        start = time.time() + 3
        times = [start + i * spread_s / max(1, scheduled - 1) for i in range(scheduled)]
        ids = [api.probe(run_at=_rfc3339(t)) for t in times]
        wait_for(lambda: api.job(ids[-1])["state"] == "succeeded", spread_s + 60, "the scheduled jobs")
        jobs = [api.job(j) for j in ids]
        errors = [_ts(j["started_at"]) - _ts(j["run_at"]) for j in jobs]
        in_order = [j["started_at"] for j in jobs] == sorted(j["started_at"] for j in jobs)
    finally:
        worker.kill()
        gateway.stop()
        status.stop()
        server.client().flushall()
    return {"settings": {"visibility_timeout_s": 3600, "lease_s": 30, "lease_reaper_s": 5, "delayed_poll_s": 0.25},
            "kills": kills, "running_again_after_kill_s": summary(seconds), "samples_s": [round(s, 2) for s in seconds],
            "scheduled": {"jobs": scheduled, "spread_s": spread_s, "start_error_s": summary(errors),
                          "max_s": max(errors), "in_order": in_order}}
