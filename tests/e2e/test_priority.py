"""Strict priority: a high job submitted last runs before a backlog of low jobs."""

from __future__ import annotations

# Long enough (seconds) that the busy job still runs while the 51 jobs below are submitted,
# even on a loaded machine.
LONG = {"prompt": "Write a long story about a lighthouse keeper.", "max_tokens": 400, "temperature": 0}
SHORT = {"prompt": "Hi", "max_tokens": 1}


def test_high_job_submitted_last_starts_before_queued_low_jobs(platform):
    # The shared platform's llm worker runs one job at a time (OFFLOAD_WORKER_CONCURRENCY=1).
    busy = platform.submit_llm({**LONG, "priority": "normal"}).json()["id"]
    platform.wait(busy, states={"running", "succeeded"})
    lows = [platform.submit_llm({**SHORT, "priority": "low"}).json()["id"] for _ in range(50)]
    high = platform.submit_llm({**SHORT, "priority": "high"}).json()["id"]
    assert platform.job(busy)["state"] == "running", "the busy job ended before the queue was built: make it longer"

    assert platform.wait(busy)["state"] == "succeeded"
    high_job = platform.wait(high)
    first_low = platform.wait(lows[0])
    starts = {j: platform.job(j)["started_at"] for j in lows if platform.job(j)["started_at"]}
    assert high_job["started_at"] < first_low["started_at"]
    assert all(high_job["started_at"] < s for s in starts.values())
