"""Guarantee: a job whose whole worker is lost (node gone, SIGKILL of the main process and its
children, a container OOM-killed) runs again within a minute, whatever the visibility timeout:
its lease lapses and the gateway's lease reaper puts it back at the head of its queue. Shipped
settings here: the visibility timeout is the default hour, the lease the default 30 s."""

from __future__ import annotations

import signal
import time

import pytest

from tests.reliability.ledger import facts, wait_all_terminal
from tests.support.processes import wait_for

ADMIN = "ops"  # probe jobs are for admin tenants
# A probe job long enough to be caught running, short enough to run again quickly.
RUNNING_JOB = {"sleep_seconds": 20, "steps": 20}


def _kill_whole_worker(worker) -> float:
    """SIGKILL the worker's process group (main process and job processes), as a lost node does."""
    killed_at = time.time()
    worker.signal(signal.SIGKILL)
    worker.proc.wait(10)
    return killed_at


@pytest.mark.slow
def test_a_whole_worker_killed_mid_job_is_recovered_within_a_minute_at_the_shipped_settings(
        platform_factory, store, figures):
    platform = platform_factory.start(workers=("ocr",))
    job_id = platform.submit_probe(RUNNING_JOB).json()["id"]
    platform.wait(job_id, states={"running"}, tenant=ADMIN)
    killed_at = _kill_whole_worker(platform.workers["ocr"])
    assert store.hlen("unacked") == 1, "kombu holds the lost worker's message as unacknowledged"

    platform_factory.start_worker("ocr", platform_factory.env())
    wait_for(lambda: platform.job(job_id, ADMIN)["attempts"] == 2, 60, "the job to run again")
    running_again = time.time() - killed_at
    wait_all_terminal(store, [job_id], timeout=60)

    job = facts(store, [job_id])[job_id]
    assert job.state == "succeeded" and job.result_writes == 1, job
    assert job.states == ("queued", "running", "queued", "running", "succeeded"), job.states
    assert store.hlen("unacked") == 0, "the stale copy was dropped, so the visibility timeout runs nothing twice"
    assert running_again < 60
    figures.record("whole-worker-kill-shipped", running_again_after_kill_s=round(running_again, 1),
                   visibility_timeout_s=3600, lease_s=30)


@pytest.mark.slow
def test_with_no_worker_left_the_recovered_job_waits_on_its_list_where_keda_sees_it(platform_factory, store):
    platform = platform_factory.start(workers=("ocr",))
    job_id = platform.submit_probe(RUNNING_JOB).json()["id"]
    platform.wait(job_id, states={"running"}, tenant=ADMIN)
    _kill_whole_worker(platform.workers["ocr"])
    # No worker of the type at all (KEDA scaled it to zero, or the node is gone): the reaper
    # still puts the job back on its list, which is what KEDA's redis trigger reads (LLEN).
    wait_for(lambda: store.llen("probe.normal") == 1, 60, "the job back on its list")
    assert platform.job(job_id, ADMIN)["state"] == "queued"
    platform_factory.start_worker("ocr", platform_factory.env())
    wait_all_terminal(store, [job_id], timeout=90)
    job = facts(store, [job_id])[job_id]
    assert job.state == "succeeded" and job.attempts == 2 and job.result_writes == 1


@pytest.mark.slow
def test_a_job_killed_again_and_again_still_ends_dead_after_max_attempts(platform_factory, store):
    env = {"OFFLOAD_LEASE_SECONDS": "3", "OFFLOAD_LEASE_REAPER_SECONDS": "1", "OFFLOAD_PROBE_MAX_ATTEMPTS": "2"}
    platform = platform_factory.start(workers=("ocr",), env=env)
    job_id = platform.submit_probe(RUNNING_JOB).json()["id"]
    for attempt in (1, 2):  # every attempt's worker is lost
        wait_for(lambda: (platform.job(job_id, ADMIN)["state"], platform.job(job_id, ADMIN)["attempts"]) ==
                 ("running", attempt), 60, f"attempt {attempt} to run")
        _kill_whole_worker(platform.workers["ocr"])
        platform.workers["ocr"] = platform_factory.start_worker("ocr", platform_factory.env(**env))
    wait_all_terminal(store, [job_id], timeout=60)
    job = facts(store, [job_id])[job_id]
    assert job.state == "dead" and job.error["type"] == "WorkerLost" and job.attempts == 2, job
    assert job.result_writes == 0


@pytest.mark.slow
def test_a_retry_backoff_survives_the_worker_that_scheduled_it(platform_factory, store, figures):
    """The retry waits in the delayed set, not in the worker's memory as a Celery ETA message:
    killing that worker during the backoff changes nothing, and another worker runs it on time."""
    env = {"OFFLOAD_RETRY_BACKOFF_BASE_SECONDS": "8", "OFFLOAD_RETRY_BACKOFF_MAX_SECONDS": "8"}
    platform = platform_factory.start(workers=("ocr",), env=env)
    job_id = platform.submit_probe({"fail_attempts": 1}).json()["id"]
    retrying = platform.wait(job_id, states={"retrying"}, tenant=ADMIN)
    # The worker acks the failed run's message just after recording `retrying`; from then on no
    # worker holds anything of the job (a Celery ETA retry would sit in `unacked` all along).
    wait_for(lambda: store.hlen("unacked") == 0, 5, "the failed run's message to be acked, leaving none held")
    _kill_whole_worker(platform.workers["ocr"])
    platform_factory.start_worker("ocr", platform_factory.env(**env))
    done = platform.wait(job_id, timeout=60, tenant=ADMIN)
    assert done["state"] == "succeeded" and done["attempts"] == 2
    late = _ts(done["started_at"]) - _ts(retrying["retry_at"])
    assert late < 30, f"the retry ran {late:.1f} s after its time"
    figures.record("retry-across-worker-kill", retry_started_after_retry_at_s=round(late, 2))


@pytest.mark.slow
def test_two_workers_share_the_retries_and_neither_holds_a_message_it_is_not_running(platform_factory, store):
    env = {"OFFLOAD_RETRY_BACKOFF_BASE_SECONDS": "2", "OFFLOAD_RETRY_BACKOFF_MAX_SECONDS": "2",
           "OFFLOAD_WORKER_CONCURRENCY": "1"}
    platform = platform_factory.start(workers=("ocr", "llm"), env=env)
    ids = [platform.submit_probe({"fail_attempts": 1, "sleep_seconds": 0.2}).json()["id"] for _ in range(16)]
    held = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(platform.job(j, ADMIN)["state"] not in ("succeeded", "dead") for j in ids):
        held.append(store.hlen("unacked"))
        time.sleep(0.2)
    assert max(held) <= 2, f"a worker held messages it was not running: {max(held)} unacknowledged at once"
    results = [platform.result(j, tenant=ADMIN) for j in ids]
    pids = {r["pid"] for r in results}
    assert all(r["attempt"] == 2 for r in results)
    assert len(pids) == 2, "both workers' job processes ran retries"


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
