"""Guarantee: scaling a worker in (SIGTERM, then SIGKILL when the grace period ends, as the
kubelet does) never loses the job it was running, nor leaves it `running` forever."""

from __future__ import annotations

import signal
import time

import pytest

from tests.reliability.envs import short_timeouts
from tests.reliability.ledger import facts, wait_all_terminal
from tests.support.processes import wait_for

ENV = short_timeouts(15)
# A few seconds of generation: long enough to be caught running, well inside the time limits.
LONG = {"prompt": "Write a story about a lighthouse keeper and a storm.", "max_tokens": 120, "temperature": 0}


@pytest.mark.slow
def test_sigterm_drains_the_running_job_and_a_cut_grace_period_redelivers_it(platform_factory, store, figures):
    platform = platform_factory.start(workers=("llm",), env=ENV)
    first = platform.workers["llm"]

    # 1. A grace period long enough: the running job finishes where it is, nothing new starts.
    drained = platform.submit_llm(LONG).json()["id"]
    platform.wait(drained, states={"running"})
    first.terminate()
    after_sigterm = platform.submit_llm(LONG).json()["id"]
    wait_for(lambda: first.proc.poll() is not None, 60, "the worker to finish its job and exit")
    assert first.proc.returncode == 0, first.log_tail()
    job = facts(store, [drained])[drained]
    assert job.state == "succeeded" and job.attempts == 1 and job.result_writes == 1, job
    assert store.hget(f"offload:job:{after_sigterm}", "state") == b"queued", "a draining worker took new work"

    # 2. A grace period shorter than the job: SIGTERM, then SIGKILL. Another replica finishes it.
    second = platform_factory.start_worker("llm", first.env)
    platform.wait(after_sigterm, states={"running"})
    second.terminate()
    time.sleep(1.0)  # the grace period the kubelet gave it
    killed_at = time.time()
    second.signal(signal.SIGKILL)
    second.proc.wait(10)
    assert store.hget(f"offload:job:{after_sigterm}", "state") == b"running"
    platform_factory.start_worker("llm", first.env)
    wait_all_terminal(store, [after_sigterm], timeout=90)
    job = facts(store, [after_sigterm])[after_sigterm]
    assert job.state == "succeeded", job
    assert job.attempts == 2 and job.result_writes == 1, job
    # Its lease lapsed and the gateway's lease reaper put it back at the head of its queue.
    assert job.states == ("queued", "running", "queued", "running", "succeeded"), job.states
    figures.record("2-scale-in", drained_job_attempts=1, cut_job_attempts=job.attempts,
                   cut_job_restarted_after_s=round(job.state_times[3] - killed_at, 1),
                   visibility_timeout_s=int(ENV["OFFLOAD_VISIBILITY_TIMEOUT_SECONDS"]))
