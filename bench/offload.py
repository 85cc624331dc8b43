"""Offload as the benchmarks run it: its services started by their own commands, and jobs put
on its queues through the core's own submit path (`JobStore.submit`, the gateway's Lua script).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

from offload_core.jobs.store import JobStore, NewJob, connect
from offload_core.settings import Settings
from offload_core.types import JobType, Priority

from .procs import VENV_BIN, Proc, free_port

TENANT = "bench"
# What an LLM job's stored request looks like (the gateway stores the validated request JSON).
LLM_PAYLOAD = json.dumps({"messages": [{"role": "user", "content": "Say hello in five words."}],
                          "max_tokens": 16, "temperature": 0.0}, separators=(",", ":")).encode()
# A probe job that does no work: every cost of the platform, none of the compute.
PROBE_PAYLOAD = json.dumps({"sleep_seconds": 0}, separators=(",", ":")).encode()


class OffloadEnv:
    """The settings every Offload process of one benchmark shares."""

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url, self.log_dir = redis_url, log_dir
        self.api_key = secrets.token_urlsafe(24)
        self.status_port = free_port()

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "OFFLOAD_ENV": "production",
            "OFFLOAD_REDIS_URL": self.redis_url,
            "OFFLOAD_API_KEYS": f"{TENANT}:{self.api_key}",
            "OFFLOAD_ADMIN_TENANTS": TENANT,  # probe jobs are for admin tenants
            "OFFLOAD_STATUS_PUBLIC_URL": f"http://127.0.0.1:{self.status_port}",
            # A load test is one tenant sending far more than the default per-tenant limits allow.
            "OFFLOAD_RATE_LIMIT_PER_MINUTE": "1000000000",
            "OFFLOAD_MAX_QUEUED_PER_TENANT": "1000000000",
            "OFFLOAD_WORKER_HTTP_PORT": "0",
            "OFFLOAD_HOST": "127.0.0.1",
        }
        env.update(extra)
        return env

    def settings(self) -> Settings:
        return Settings(env="production", redis_url=self.redis_url, api_keys=f"{TENANT}:{self.api_key}",
                        rate_limit_per_minute=1_000_000_000, max_queued_per_tenant=1_000_000_000)

    # -- services ------------------------------------------------------------------------------

    def gateway(self, name: str = "offload-gateway", **extra: str) -> Proc:
        port = free_port()
        return Proc(name, [str(VENV_BIN / "offload-gateway")],
                    self.env(OFFLOAD_PORT=str(port), **{"OFFLOAD_METRICS_PORT": str(free_port()), **extra}),
                    self.log_dir, port=port)

    def status(self, **extra: str) -> Proc:
        # Each API service serves its metrics on a port of its own: a free one here, not 9090.
        return Proc("offload-status", [str(VENV_BIN / "offload-status")],
                    self.env(OFFLOAD_PORT=str(self.status_port), **{"OFFLOAD_METRICS_PORT": str(free_port()), **extra}),
                    self.log_dir, port=self.status_port)

    def probe_worker(self, concurrency: int = 2, name: str = "offload-probe-worker") -> Proc:
        """The product's own OCR worker, running probe jobs (every worker runs them): claim, lease,
        events, result record, metrics, tracing hooks, JSON logs; no OCR is ever loaded."""
        return Proc(name, [str(VENV_BIN / "offload-worker-ocr")],
                    self.env(OFFLOAD_WORKER_CONCURRENCY=str(concurrency)), self.log_dir, ready_log=" ready.")

    def worker(self, kind: str, concurrency: int = 1, **extra: str) -> Proc:
        return Proc(f"offload-worker-{kind}", [str(VENV_BIN / f"offload-worker-{kind}")],
                    self.env(OFFLOAD_WORKER_CONCURRENCY=str(concurrency), **extra), self.log_dir,
                    ready_log=" ready.")

    # -- jobs ------------------------------------------------------------------------------------

    def submit(self, jobs: list[NewJob], parallel: int = 32) -> list[str]:
        """Submit through `JobStore.submit` (the gateway's atomic script); returns the job ids."""
        return asyncio.run(_submit_all(self.settings(), jobs, parallel))


def probe_job(priority: Priority = Priority.NORMAL, sleep_seconds: float = 0.0) -> NewJob:
    """The product's diagnostic job: it sleeps `sleep_seconds` (0: returns at once)."""
    payload = json.dumps({"sleep_seconds": sleep_seconds}, separators=(",", ":")).encode()
    return NewJob(type=JobType.PROBE, tenant=TENANT, priority=priority, payload=payload,
                  params={"sleep_seconds": sleep_seconds, "steps": 1, "fail": "none", "fail_attempts": 0})


def llm_job(priority: Priority = Priority.NORMAL) -> NewJob:
    """An LLM job as the gateway stores one (the live-events section queues them, no worker runs them)."""
    return NewJob(type=JobType.LLM, tenant=TENANT, priority=priority, payload=LLM_PAYLOAD,
                  params={"model": "bench", "max_tokens": 16, "temperature": 0.0})


def succeeded(r, job_type: JobType = JobType.PROBE) -> int:
    """Jobs of a type that succeeded so far (the store's lifetime counters)."""
    return int(r.hget("offload:counters", f"{job_type.value}:succeeded") or 0)


async def _submit_all(settings: Settings, jobs: list[NewJob], parallel: int) -> list[str]:
    redis = connect(settings, max_connections=parallel)
    store = JobStore(redis, settings)
    ids: list[str] = []
    try:
        for start in range(0, len(jobs), parallel):
            outcomes = await asyncio.gather(*(store.submit(j) for j in jobs[start:start + parallel]))
            for outcome in outcomes:
                if outcome.status != "created":
                    raise RuntimeError(f"submit refused: {outcome.status}")
                ids.append(outcome.job_id)
    finally:
        await redis.aclose()
    return ids
