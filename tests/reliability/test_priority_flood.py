"""Guarantee: strict priority. With thousands of `low` jobs queued, a `high` job starts as soon
as a worker slot frees up: after at most the one job each slot is running (one job duration).

The price is starvation: `low` jobs run only while `high` and `normal` are empty. The second
half of the scenario shows it: a burst of `normal` jobs submitted behind the flood all start
before the next `low` job does.
"""

from __future__ import annotations

import statistics

import pytest

from tests.reliability.envs import short_timeouts
from tests.reliability.ledger import facts, wait_all_terminal
from tests.reliability.traffic import Submitter, in_parallel

FLOOD = 2_000
BURST = 10
LOW = {"prompt": "Name a colour.", "max_tokens": 6, "temperature": 0, "priority": "low"}


@pytest.mark.slow
def test_high_job_overtakes_a_flood_of_low_jobs(platform_factory, store, figures):
    platform = platform_factory.start(workers=("llm",), env=short_timeouts(
        30, OFFLOAD_RATE_LIMIT_PER_MINUTE="100000", OFFLOAD_WORKER_CONCURRENCY="1"))
    submit = Submitter(platform)
    lows = [a.job_id for a in in_parallel([lambda: submit.llm(LOW)] * FLOOD, threads=6)]
    assert all(lows) and len(lows) == FLOOD
    queued_behind = store.llen("llm.low")

    high = platform.submit_llm({**LOW, "priority": "high"}).json()["id"]
    wait_all_terminal(store, [high], timeout=60)
    normals = [a.job_id for a in in_parallel([lambda: submit.llm({**LOW, "priority": "normal"})] * BURST)]
    wait_all_terminal(store, normals, timeout=120)

    h = facts(store, [high])[high]
    started_lows = [j for j in facts(store, lows).values() if j.started_at]
    overtaken_by = [j for j in started_lows if h.queued_at < j.started_at < h.started_at]
    # Each worker slot may be running (or just have claimed) one low job when the high one arrives.
    assert len(overtaken_by) <= 1, f"{len(overtaken_by)} low jobs started while a high job waited"
    assert h.state == "succeeded"

    burst = facts(store, normals)
    assert {j.state for j in burst.values()} == {"succeeded"}
    first_queued = min(j.queued_at for j in burst.values())
    last_started = max(j.started_at for j in burst.values())
    lows_during_burst = [j for j in started_lows if first_queued < j.started_at < last_started]
    assert len(lows_during_burst) <= 1, "low jobs ran while normal jobs waited"

    durations = [j.finished_at - j.started_at for j in started_lows if j.finished_at]
    typical = statistics.median(durations)
    figures.record("6-priority-flood", low_jobs_queued=FLOOD, low_waiting_when_high_arrived=queued_behind,
                   high_wait_s=round(h.started_at - h.queued_at, 2), low_job_median_s=round(typical, 2),
                   high_wait_in_job_durations=round((h.started_at - h.queued_at) / typical, 2),
                   lows_started_while_high_waited=len(overtaken_by),
                   lows_started_during_normal_burst=len(lows_during_burst),
                   low_jobs_run_in_scenario=len(started_lows))
