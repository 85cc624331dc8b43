"""The worker registry end to end, with real worker processes: GET /v1/workers lists what each
worker is and does; a killed worker is listed `lost`, counted once in offload_workers_lost_total
and dropped from offload_workers_live; a worker stopped cleanly leaves; /v1/queues warns when
work waits and no live worker of its type exists."""

from __future__ import annotations

import re
import signal

import httpx

from tests.support.platform import Platform, PlatformFactory
from tests.support.processes import wait_for

ADMIN = "ops"
FAST_REGISTRY = {"OFFLOAD_WORKER_HEARTBEAT_SECONDS": "0.5", "OFFLOAD_WORKER_LOST_AFTER_SECONDS": "2",
                 "OFFLOAD_METRICS_REFRESH_SECONDS": "0.5"}


def workers(platform: Platform, tenant: str = ADMIN) -> dict:
    r = httpx.get(f"{platform.status.url}/v1/workers", headers=platform.headers(tenant), timeout=10)
    r.raise_for_status()
    return r.json()


def by_pid(platform: Platform, pid: int, tenant: str = ADMIN) -> dict | None:
    return next((w for w in workers(platform, tenant)["workers"] if w["pid"] == pid), None)


def metric(platform: Platform, name: str, job_type: str) -> float:
    page = httpx.get(platform.metrics_url("status"), timeout=10).text
    match = re.search(rf'^{name}{{type="{job_type}"}} ([0-9.e+]+)$', page, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def test_each_worker_registers_what_it_is_what_it_runs_and_what_it_has_done(platform_factory: PlatformFactory):
    platform = platform_factory.start(workers=("ocr",), env={**FAST_REGISTRY, "OFFLOAD_WORKER_CONCURRENCY": "2"})
    pid = platform.workers["ocr"].proc.pid
    wait_for(lambda: by_pid(platform, pid) is not None, 30, "the OCR worker to register")
    entry = by_pid(platform, pid)
    assert entry["type"] == "ocr" and entry["state"] == "live" and entry["id"].startswith(f"ocr-{pid}@")
    assert (entry["pool"], entry["concurrency"]) == ("prefork", 2)
    assert entry["queues"] == ["ocr.high", "probe.high", "ocr.normal", "probe.normal", "ocr.low", "probe.low"]
    assert entry["version"] and entry["started_at"] and (entry["processed"], entry["failed"]) == (0, 0)

    long_job = platform.submit_probe({"sleep_seconds": 4}).json()["id"]
    wait_for(lambda: long_job in (by_pid(platform, pid)["current_jobs"] or []), 30, "the job in the worker's entry")
    # Another tenant sees that the worker is busy, not which job (it may be anyone's).
    seen_by_alice = by_pid(platform, pid, tenant="alice")
    assert seen_by_alice["running"] == 1 and seen_by_alice["current_jobs"] is None

    failing = platform.submit_probe({"fail": "permanent"}).json()["id"]
    for job_id in (long_job, failing):
        platform.wait(job_id, tenant=ADMIN)
    wait_for(lambda: (by_pid(platform, pid)["processed"], by_pid(platform, pid)["failed"]) == (2, 1), 10,
             "the counts to reach the registry")
    assert by_pid(platform, pid)["current_jobs"] == []


def test_a_killed_worker_is_listed_lost_and_counted_once(platform_factory: PlatformFactory):
    platform = platform_factory.start(workers=("ocr",), env=FAST_REGISTRY)
    victim = platform.workers["ocr"]
    survivor = platform_factory.start_worker("llm", {**victim.env})
    wait_for(lambda: by_pid(platform, victim.proc.pid) and by_pid(platform, survivor.proc.pid), 60,
             "both workers to register")
    wait_for(lambda: metric(platform, "offload_workers_live", "ocr") == 1, 10, "offload_workers_live to count it")
    assert metric(platform, "offload_workers_lost_total", "ocr") == 0

    victim.signal(signal.SIGKILL)  # the whole process group: no clean stop, no goodbye
    wait_for(lambda: by_pid(platform, victim.proc.pid)["state"] == "lost", 15, "the killed worker to be lost")
    lost = by_pid(platform, victim.proc.pid)
    assert lost["lost_at"] and lost["seconds_since_seen"] >= 2
    assert by_pid(platform, survivor.proc.pid)["state"] == "live"
    assert workers(platform)["by_type"]["ocr"] == {"live": 0, "lost": 1}
    wait_for(lambda: metric(platform, "offload_workers_live", "ocr") == 0, 10, "offload_workers_live to drop it")
    wait_for(lambda: metric(platform, "offload_workers_lost_total", "ocr") == 1, 10, "the lost worker counted")

    # Probe jobs still run: any live worker takes them.
    job = platform.submit_probe({"sleep_seconds": 0, "priority": "low"}).json()["id"]
    assert platform.wait(job, tenant=ADMIN)["state"] == "succeeded"
    assert metric(platform, "offload_workers_lost_total", "ocr") == 1  # still once, after many sweeps


def test_queues_warn_when_jobs_wait_and_no_live_worker_of_their_type_exists(platform_factory: PlatformFactory):
    platform = platform_factory.start(workers=("ocr",), env=FAST_REGISTRY)
    wait_for(lambda: workers(platform)["by_type"]["ocr"]["live"] == 1, 30, "the OCR worker to register")
    for _ in range(2):
        assert platform.submit_llm({"prompt": "Hi", "max_tokens": 2}).status_code == 202
    stats = httpx.get(f"{platform.status.url}/v1/queues", headers=platform.headers(), timeout=10).json()
    assert stats["workers"]["llm"]["live_workers"] == 0 and stats["workers"]["ocr"]["live_workers"] == 1
    assert stats["workers"]["ocr"]["warning"] is None
    assert "2 llm jobs are queued and no live llm worker" in stats["workers"]["llm"]["warning"]
    assert [(w["type"], w["queued"]) for w in stats["warnings"]] == [("llm", 2)]


def test_a_worker_stopped_cleanly_leaves_the_registry_and_is_not_counted_lost(platform_factory: PlatformFactory):
    platform = platform_factory.start(workers=("ocr",), env=FAST_REGISTRY)
    worker = platform.workers["ocr"]
    wait_for(lambda: by_pid(platform, worker.proc.pid) is not None, 30, "the worker to register")
    worker.stop()
    assert worker.proc.returncode == 0
    wait_for(lambda: workers(platform)["workers"] == [], 5, "the entry to be removed")
    assert metric(platform, "offload_workers_lost_total", "ocr") == 0
