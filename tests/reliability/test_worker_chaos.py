"""Guarantee: a job answered 202 reaches a terminal state and its result is written exactly once,
however often the processes running it are killed (DESIGN §4)."""

from __future__ import annotations

import io
import statistics

import pytest

from tests.reliability.chaos import ChaosMonkey, recovery_seconds
from tests.reliability.envs import short_timeouts
from tests.reliability.ledger import facts, state_counts, wait_all_terminal
from tests.reliability.traffic import Submitter, in_parallel
from tests.support import documents as docs

# kombu's own redelivery of a lost worker's message (behind the lease reaper) is short here too.
CHAOS_ENV = short_timeouts(
    10,
    # Enough attempts that a job is not declared dead just because chaos hit it repeatedly.
    OFFLOAD_LLM_MAX_ATTEMPTS="10", OFFLOAD_OCR_MAX_ATTEMPTS="10", OFFLOAD_RATE_LIMIT_PER_MINUTE="100000",
    # A whole worker killed between taking a message and recording it loses the message; the
    # gateway's sweep queues such a job again (test_lost_messages.py). Once in many runs here.
    OFFLOAD_LOST_MESSAGE_SWEEP_SECONDS="10",
    # Keep every finished job's whole event history for the scenario's accounting.
    OFFLOAD_EVENTS_GRACE_SECONDS="3600",
)
JOBS = 200
OCR_SHARE = 0.4


def _llm_body(i: int) -> dict:
    return {"prompt": f"Count from one to twenty, item {i}.", "max_tokens": 4 + (i * 7) % 13, "temperature": 0}


def _small_page() -> bytes:
    buf = io.BytesIO()
    docs.render_page("Invoice 4711 was paid in full on 3 June.", size=(1400, 520)).save(buf, "PNG", dpi=(300, 300))
    return buf.getvalue()


@pytest.mark.slow
def test_chaos_kills_lose_no_job_and_write_every_result_once(platform_factory, store, figures):
    platform = platform_factory.start(workers=("ocr", "llm"), env=CHAOS_ENV)
    workers = [("ocr", platform.workers["ocr"]), ("llm", platform.workers["llm"]),
               ("llm", platform_factory.start_worker("llm", platform.workers["llm"].env))]
    png = _small_page()
    submit = Submitter(platform)
    calls = [
        (lambda i=i: submit.ocr(png, f"page-{i}.png")) if i % 10 < OCR_SHARE * 10 else (lambda i=i: submit.llm(_llm_body(i)))
        for i in range(JOBS)
    ]

    chaos = ChaosMonkey(platform_factory, workers, store, every=(2.0, 3.5))
    chaos.start()
    try:
        answers = in_parallel(calls, threads=4)
        accepted = [a.job_id for a in answers if a.status == 202]
        assert len(accepted) == JOBS, [a for a in answers if a.status != 202][:3]
        states = wait_all_terminal(store, accepted, timeout=240)
    finally:
        chaos.stop()  # before the fixture stops the platform: it must not restart workers after that
    assert not chaos.errors, chaos.errors

    everything = facts(store, accepted)
    stuck = [everything[j] for j, s in states.items() if s != "succeeded"]
    assert state_counts(states) == {"succeeded": JOBS}, (state_counts(states), stuck[:3])
    writes = {j.result_writes for j in everything.values()}
    assert writes == {1}, "every result is written exactly once"
    assert all(j.has_result for j in everything.values())
    for job in everything.values():
        assert job.states.count("succeeded") == 1 and job.states[-1] == "succeeded", job
        assert job.states.count("running") == job.attempts, job

    redelivered = [j for j in everything.values() if j.attempts > 1]
    assert chaos.kills, "the chaos loop killed nothing: the scenario proved nothing"
    assert redelivered, "no job was interrupted mid-run"
    recovery = recovery_seconds(chaos.kills, everything)
    figures.record(
        "1-worker-chaos", jobs=JOBS, ocr_jobs=sum(1 for i in range(JOBS) if i % 10 < OCR_SHARE * 10),
        kills_child=sum(k.mode == "child" for k in chaos.kills),
        kills_worker=sum(k.mode == "worker" for k in chaos.kills),
        worker_restarts=chaos.restarts, jobs_rerun=len(redelivered),
        max_attempts_seen=max(j.attempts for j in everything.values()),
        result_writes_total=sum(j.result_writes for j in everything.values()),
        recovery_child_max_s=round(max(recovery["child"], default=0), 2),
        recovery_worker_median_s=round(statistics.median(recovery["worker"]), 2) if recovery["worker"] else None,
        recovery_worker_max_s=round(max(recovery["worker"], default=0), 2),
        visibility_timeout_s=int(CHAOS_ENV["OFFLOAD_VISIBILITY_TIMEOUT_SECONDS"]),
        lost_messages_rescued=sum(int(v) for k, v in store.hgetall("offload:counters").items() if k.endswith(b":rescued")),
    )
