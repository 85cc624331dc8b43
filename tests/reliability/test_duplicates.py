"""Guarantee: however many times a job's message is delivered, its result is written once, and
a job held under a live lease is never run by a second worker at the same time.

Duplicates come from a publisher that sends twice, from a message restored while its first
delivery still runs (a visibility timeout shorter than the job), and from late redeliveries of
finished jobs.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from offload_core.jobs.store import message_app
from offload_core.queue.messages import build_task_message
from tests.reliability.envs import short_timeouts
from tests.reliability.ledger import facts, wait_all_terminal
from tests.reliability.traffic import Submitter, in_parallel
from tests.support.processes import wait_for
from tests.worker_llm.llm_peer import chunk, usage_chunk

JOBS = 20
COPIES = 3  # each message is on the queue three times
SHORT_VT = 5  # the smallest visibility timeout the settings accept
SHORT = {"prompt": "Say hello.", "max_tokens": 6, "temperature": 0}


def _duplicate_queue(store, queue: str, copies: int) -> int:
    messages = store.lrange(queue, 0, -1)
    for _ in range(copies - 1):
        store.lpush(queue, *messages)
    return len(messages)


def _deliveries(log: str, job_id: str) -> int:
    """How many deliveries of `job_id` a worker handled: the runner ends each with one line
    naming the job (its outcome, or "not run: terminal ..." / "not run: leased ...")."""
    return sum(1 for line in log.splitlines()
               if '"logger": "offload.runner"' in line and (f'"msg": "job {job_id} ' in line
                                                            or f'"msg": "job {job_id}:' in line))


def _drained(store) -> bool:
    return all(store.llen(q) == 0 for q in ("llm.high", "llm.normal", "llm.low")) and store.hlen("unacked") == 0


@pytest.mark.slow
def test_every_message_delivered_three_times_still_records_one_result(platform_factory, store, figures):
    env = short_timeouts(15, OFFLOAD_WORKER_CONCURRENCY="2")
    platform = platform_factory.start(workers=(), env=env)
    submit = Submitter(platform)
    ids = [a.job_id for a in in_parallel([lambda: submit.llm(SHORT)] * JOBS)]
    assert all(ids)
    assert _duplicate_queue(store, "llm.normal", COPIES) == JOBS
    assert store.llen("llm.normal") == JOBS * COPIES

    worker = platform_factory.start_worker("llm", platform_factory.env(**env))
    wait_all_terminal(store, ids, timeout=180)
    # Copies that met a live lease were dropped (the lease reaper recovers a job whose worker is lost).
    wait_for(lambda: _drained(store), 120, "every copy of every message to be consumed")
    # Late redelivery of finished jobs: one more copy each, after the fact.
    for job_id in ids:
        store.lpush("llm.normal", _message_for(job_id))
    wait_for(lambda: _drained(store), 60, "the late copies to be consumed")

    everything = facts(store, ids)
    for job in everything.values():
        assert job.state == "succeeded" and job.attempts == 1 and job.result_writes == 1, job
        assert job.states == ("queued", "running", "succeeded"), job.states
    log = worker.log_text()
    deliveries = sum(_deliveries(log, j) for j in ids)
    held = sum(log.count(f"job {j} not run: leased") for j in ids)
    figures.record("5-duplicates", jobs=JOBS, copies_each=COPIES + 1, deliveries=deliveries,
                   met_live_lease=held, result_writes_total=sum(j.result_writes for j in everything.values()))


def _message_for(job_id: str) -> str:
    return build_task_message(message_app(), job_id=job_id, job_type="llm", queue="llm.normal", tenant="alice")


class SlowLlm:
    """An OpenAI-compatible server that streams one token every `pause` seconds: a job whose
    length does not depend on how busy the machine is."""

    def __init__(self, tokens: int = 20, pause: float = 0.5) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server API
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                events = [chunk(role="assistant")]
                for i in range(tokens):
                    events.append(chunk(f" w{i}"))
                events += [chunk(finish="length"), usage_chunk(5, tokens), "[DONE]"]
                for n, data in enumerate(events):
                    if 0 < n <= tokens:
                        time.sleep(pause)
                    event = f"data: {data}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_visibility_timeout_shorter_than_the_job_does_not_run_it_twice(platform_factory, store, figures):
    # Worker A has a sound configuration; worker B a visibility timeout far shorter than A's job
    # (10 s of streaming): B restores A's unacknowledged message while A still runs it, and
    # receives it itself. B starts once A runs the job: started earlier, B could win the first
    # delivery itself and hit its own (short) time limit, which is another scenario.
    llm = SlowLlm(tokens=20, pause=0.5)
    try:
        backend = {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": llm.base_url}
        platform = platform_factory.start(workers=("llm",), env=short_timeouts(60), worker_env={"llm": backend})
        job_id = platform.submit_llm({"prompt": "Stream slowly.", "max_tokens": 20}).json()["id"]
        wait_for(lambda: platform.job(job_id)["state"] == "running", 30, "worker A to start the job")
        hasty = platform_factory.start_worker("llm", platform_factory.env(**short_timeouts(SHORT_VT), **backend))
        wait_all_terminal(store, [job_id], timeout=120)
        wait_for(lambda: _drained(store), 60, "every delivery to be consumed")
    finally:
        llm.stop()

    job = facts(store, [job_id])[job_id]
    assert job.state == "succeeded" and job.attempts == 1 and job.result_writes == 1, job
    assert job.states == ("queued", "running", "succeeded"), job.states
    logs = platform.workers["llm"].log_text() + hasty.log_text()
    deliveries = _deliveries(logs, job_id)
    held = logs.count(f"job {job_id} not run: leased")
    assert deliveries >= 2 and held >= 1, "the short visibility timeout never redelivered the job: nothing was tested"
    figures.record("5-short-visibility-timeout", job_seconds=round(job.finished_at - job.started_at, 1),
                   short_visibility_timeout_s=SHORT_VT, deliveries=deliveries, met_live_lease=held, runs=job.attempts)
