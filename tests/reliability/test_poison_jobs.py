"""Guarantee: a job that can never succeed ends, visibly, and does not take the fleet down.

- failing retryably every time: backs off (exponentially, with jitter), becomes `dead`, is
  listed in the dead letters, and runs again when requeued (here: after the fault is fixed);
- failing non-retryably: fails once, never retried;
- crashing the process that runs it, every time: `dead` (WorkerLost) after its attempts.
"""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest

from tests.reliability.envs import short_timeouts
from tests.reliability.ledger import facts, wait_all_terminal
from tests.reliability.traffic import Submitter, in_parallel
from tests.support.processes import free_port, wait_for

POISON = 10
MAX_ATTEMPTS = 3
BASE, CAP = 0.2, 1.0  # OFFLOAD_RETRY_BACKOFF_BASE/MAX_SECONDS of the test platforms
SHORT = {"prompt": "Hi", "max_tokens": 2, "temperature": 0}


def _retry_delays(store, job_id: str) -> list[float]:
    """retry_at - at of each `retrying` event: the backoff the runner chose."""
    out = []
    for _, fields in store.xrange(f"offload:job:{job_id}:events"):
        data = json.loads(fields[b"data"])
        if fields[b"kind"] == b"state" and data["state"] == "retrying":
            out.append(data["retry_at"] - data["at"])
    return out


@pytest.mark.slow
def test_poison_jobs_end_dead_or_failed_and_requeue_once_fixed(platform_factory, store, figures):
    env = short_timeouts(15, OFFLOAD_LLM_MAX_ATTEMPTS=str(MAX_ATTEMPTS))
    # An OpenAI-compatible server that is not there: every attempt fails, retryably.
    broken = {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
              "OFFLOAD_LLM_MAX_HTTP_ATTEMPTS": "1"}
    platform = platform_factory.start(workers=("llm",), env=env, worker_env={"llm": broken})
    submit = Submitter(platform)
    poison = [a.job_id for a in in_parallel([lambda: submit.llm(SHORT)] * POISON)]
    assert all(poison)
    wait_all_terminal(store, poison, timeout=120)
    dead = facts(store, poison)
    for job in dead.values():
        assert job.state == "dead" and job.attempts == MAX_ATTEMPTS, job
        # Each retry waits in the delayed set until its backoff ends, then is queued again.
        assert job.states == ("queued",) + ("running", "retrying", "queued") * (MAX_ATTEMPTS - 1) + ("running", "dead")
        assert job.error["retryable"] is True and job.result_writes == 0
    delays = {j: _retry_delays(store, j) for j in poison}
    for per_job in delays.values():
        for attempt, delay in enumerate(per_job, start=1):
            ceiling = min(CAP, BASE * 2 ** (attempt - 1))
            assert ceiling / 2 - 0.01 <= delay <= ceiling + 0.01, per_job  # equal jitter
    listing = httpx.get(f"{platform.status.url}/v1/dead-letters", headers=platform.headers("ops"), timeout=10).json()
    assert {j["id"] for j in listing["jobs"]} == set(poison)
    queues = httpx.get(f"{platform.status.url}/v1/queues", headers=platform.headers(), timeout=10).json()
    assert queues["dead"] == POISON

    # The LLM server is fixed (a worker with a working backend replaces the broken one).
    platform.workers["llm"].stop()
    platform_factory.start_worker("llm", platform_factory.env(**env))
    for job_id in poison:
        r = httpx.post(f"{platform.gateway.url}/v1/jobs/{job_id}/retry", headers=platform.headers(), timeout=10)
        assert r.status_code == 202, r.text
    wait_all_terminal(store, poison, timeout=120)
    revived = facts(store, poison)
    assert {j.state for j in revived.values()} == {"succeeded"}
    assert {j.result_writes for j in revived.values()} == {1}
    assert store.zcard("offload:dead") == 0
    figures.record("4-poison", poison_jobs=POISON, attempts_each=MAX_ATTEMPTS,
                   backoff_min_s=round(min(d for v in delays.values() for d in v), 2),
                   backoff_max_s=round(max(d for v in delays.values() for d in v), 2),
                   requeued_and_succeeded=len(revived))

    # Non-retryable: a probe told to fail for good fails once, never retried. (A model this worker
    # does not serve no longer gets that far: it is refused at submit.)
    assert platform.submit_llm({**SHORT, "model": "no-such-model"}).status_code == 422
    refused = platform.http_post("/v1/jobs/probe", tenant="ops", json={"fail": "permanent"}).json()["id"]
    wait_all_terminal(store, [refused], timeout=60)
    job = facts(store, [refused])[refused]
    assert job.state == "failed" and job.attempts == 1 and job.states == ("queued", "running", "failed"), job
    assert job.error["retryable"] is False and "asked to fail" in job.error["message"]

    _a_job_that_kills_every_process_running_it_ends_dead(platform, store, figures)


def _a_job_that_kills_every_process_running_it_ends_dead(platform, store, figures) -> None:
    crasher = platform.submit_llm({"prompt": "Tell a long story.", "max_tokens": 200}).json()["id"]
    killed: set[int] = set()

    def kill_whoever_runs_it() -> bool:
        record = store.hmget(f"offload:job:{crasher}", "state", "worker")
        if record[0] == b"running" and record[1]:
            pid = int(record[1].decode().split(":")[1])
            if pid not in killed:
                killed.add(pid)
                try:
                    os.kill(pid, signal.SIGKILL)  # what an OOM kill or a native library's crash does
                except ProcessLookupError:
                    pass
        return record[0] in (b"dead", b"succeeded", b"failed")

    wait_for(kill_whoever_runs_it, 120, "the crashing job to end", interval=0.2)
    job = facts(store, [crasher])[crasher]
    assert job.state == "dead", job
    assert job.error["type"] == "WorkerLost" and job.attempts == MAX_ATTEMPTS
    assert store.zscore("offload:dead", crasher) is not None
    # The worker survived its children being killed and still runs other jobs.
    after = platform.submit_llm(SHORT).json()["id"]
    assert platform.wait(after, timeout=60)["state"] == "succeeded"
    figures.record("4-poison-crasher", child_kills=len(killed), final_state=job.state, attempts=job.attempts)
