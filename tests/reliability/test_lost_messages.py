"""Guarantee: a job whose queue message is lost is queued again and still runs once.

kombu's Redis transport takes a message with BRPOP, then records it as unacknowledged with a
second command. A worker killed between the two (or Redis losing the second write) leaves the
job `queued` with no message anywhere; the visibility timeout cannot bring back what was never
recorded. The gateway's lost-message sweep (offload_core/maintenance/sweeper.py) finds such jobs. Here the
test itself is the worker that took a message and died: it BRPOPs one and drops it.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.reliability.envs import short_timeouts
from tests.reliability.ledger import facts, wait_all_terminal
from tests.reliability.traffic import Submitter
from tests.support.processes import wait_for

SWEEP_SECONDS = 1
JOBS = 3


def _queued_ids(store, queue: str) -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in store.lrange(queue, 0, -1)]


def _rescued(store) -> int:
    return sum(int(v) for k, v in store.hgetall("offload:counters").items() if k.endswith(b":rescued"))


@pytest.mark.slow
def test_a_message_lost_between_brpop_and_ack_bookkeeping_is_queued_again_and_runs_once(
        platform_factory, store, figures):
    env = short_timeouts(15, OFFLOAD_LOST_MESSAGE_SWEEP_SECONDS=str(SWEEP_SECONDS))
    platform = platform_factory.start(workers=(), env=env)
    submit = Submitter(platform)
    ids = [submit.llm({"prompt": f"Say {w}.", "max_tokens": 4, "temperature": 0}).job_id
           for w in ("one", "two", "three")]
    assert all(ids)
    _, taken = store.brpop(["llm.normal"], timeout=5)  # ...and the worker that took it dies
    lost_at = time.time()
    lost = json.loads(taken)["headers"]["id"]
    assert lost == ids[0] and store.hlen("unacked") == 0

    wait_for(lambda: _rescued(store) == 1, 30, "the gateway to queue the lost job again")
    rescued_after = time.time() - lost_at
    assert _queued_ids(store, "llm.normal") == [ids[2], ids[1], lost]  # the lost job is next
    gateway_log = platform.gateway.log_text()
    assert "queue message was lost" in gateway_log and lost in gateway_log

    platform_factory.start_worker("llm", platform_factory.env(**env))
    states = wait_all_terminal(store, ids, timeout=180)
    everything = facts(store, ids)
    for job in everything.values():
        assert states[job.id] == "succeeded" and job.attempts == 1 and job.result_writes == 1, job
        assert job.states == ("queued", "running", "succeeded"), job.states
    time.sleep(3 * SWEEP_SECONDS)  # sweeps keep running: nothing else is taken for lost
    assert _rescued(store) == 1 and store.zcard("offload:pending") == 0
    metrics = httpx.get(platform.metrics_url("gateway")).text
    assert 'offload_lost_messages_requeued_total{type="llm"} 1.0' in metrics
    events = platform.events(lost)
    assert any(data.get("message") == "the queue message was lost; queued again" for _, _, data in events)
    figures.record("11-lost-message", jobs=JOBS, lost=1, rescued=_rescued(store),
                   rescued_after_s=round(rescued_after, 2), sweep_interval_s=SWEEP_SECONDS,
                   runs_of_lost_job=everything[lost].attempts)
