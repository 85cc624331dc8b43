"""Webhooks end to end: a finished job POSTs its signed summary to the callback URL."""

from __future__ import annotations

import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from offload_core.webhooks.signing import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature
from tests.support.processes import wait_for

SECRET = "tenant-alice-webhook-secret-0001"


@pytest.fixture
def receiver():
    received: list[tuple[dict, bytes, str]] = []
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body, self.path))
            self.send_response(answers.pop(0) if answers else 204)
            self.end_headers()

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], received, answers
    server.shutdown()


def test_finished_job_posts_a_signed_summary_and_retries_after_a_server_error(platform_factory, receiver):
    port, received, answers = receiver
    answers.append(503)  # the first delivery fails; the retry succeeds
    platform = platform_factory.start(workers=("llm",), env={
        "OFFLOAD_WEBHOOK_SECRETS": f"alice:{SECRET}", "OFFLOAD_WEBHOOK_ALLOWLIST": "127.0.0.1/32"})
    job_id = platform.submit_llm({"prompt": "Hi", "max_tokens": 2,
                                  "callback_url": f"http://127.0.0.1:{port}/hooks/offload"}).json()["id"]
    wait_for(lambda: len(received) >= 2, 60, "two webhook deliveries")
    headers, body, path = received[-1]
    assert path == "/hooks/offload"
    assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["event"] == "job.succeeded" and payload["job"]["id"] == job_id
    wait_for(lambda: (platform.job(job_id).get("webhook") or {}).get("state") == "delivered", 10, "webhook recorded")
    assert platform.job(job_id)["webhook"]["attempts"] == 2
    # One delivery, two attempts: the same delivery id, for the receiver to deduplicate on.
    ids = {h[DELIVERY_HEADER] for h, _, _ in received}
    assert len(ids) == 1 and ids.pop().startswith(f"{job_id}/")
    log = platform.gateway.log_text()  # deliveries leave from the gateway's outbox dispatcher
    assert f"job {job_id} webhook attempt 1: the callback answered 503; retrying in" in log
    assert f"job {job_id} webhook delivered (attempt 2, HTTP 204)" in log


def test_tenant_without_a_webhook_secret_cannot_register_a_callback(platform_factory):
    platform = platform_factory.start(workers=(), env={"OFFLOAD_WEBHOOK_SECRETS": f"bob:{SECRET}"})
    r = platform.submit_llm({"prompt": "Hi", "callback_url": "https://hooks.example.com/x"})
    assert r.status_code == 422 and "secret" in r.json()["detail"]


def test_a_cancel_through_the_api_sends_a_webhook(platform_factory, receiver):
    port, received, _ = receiver
    platform = platform_factory.start(workers=(), env={
        "OFFLOAD_WEBHOOK_SECRETS": f"alice:{SECRET}", "OFFLOAD_WEBHOOK_ALLOWLIST": "127.0.0.1/32"})
    job_id = platform.submit_llm({"prompt": "Hi", "callback_url": f"http://127.0.0.1:{port}/h"}).json()["id"]
    assert httpx.delete(f"{platform.gateway.url}/v1/jobs/{job_id}", headers=platform.headers()).status_code == 200
    wait_for(lambda: len(received) >= 1, 30, "the cancellation's webhook")
    assert json.loads(received[0][1])["event"] == "job.cancelled"
    time.sleep(1.0)
    assert len(received) == 1


def test_a_receiver_that_drips_its_answer_is_cut_at_the_deadline_and_jobs_run_on(platform_factory, drip_receiver):
    """The whole delivery has one deadline, and deliveries leave from the gateway's own pool:
    a receiver sending a byte a second holds one dispatcher slot for the timeout, no job slot."""
    port, attempts = drip_receiver
    platform = platform_factory.start(workers=("ocr",), env={
        "OFFLOAD_WEBHOOK_SECRETS": f"ops:{SECRET}", "OFFLOAD_WEBHOOK_ALLOWLIST": "127.0.0.1/32",
        "OFFLOAD_WEBHOOK_TIMEOUT_SECONDS": "2", "OFFLOAD_WEBHOOK_MAX_ATTEMPTS": "1",
        "OFFLOAD_WORKER_CONCURRENCY": "1"})
    hooked = platform.submit_probe({"callback_url": f"http://127.0.0.1:{port}/slow"}).json()["id"]
    wait_for(lambda: attempts, 30, "the delivery to start")
    started = time.monotonic()
    others = [platform.submit_probe({}).json()["id"] for _ in range(10)]
    for job_id in others:  # one worker slot, and it is free: jobs do not wait for the slow receiver
        assert platform.wait(job_id, tenant="ops", timeout=30)["state"] == "succeeded"
    assert time.monotonic() - started < 15
    wait_for(lambda: (platform.job(hooked, "ops").get("webhook") or {}).get("state") == "failed", 30,
             "the delivery to give up")
    webhook = platform.job(hooked, "ops")["webhook"]
    assert "within 2 s" in webhook["detail"], webhook


def test_a_worker_killed_after_recording_the_outcome_still_has_its_webhook_sent_once(platform_factory, receiver):
    """The outbox entry is written with the terminal state: the worker's fate after that changes nothing."""
    port, received, _ = receiver
    platform = platform_factory.start(workers=("ocr",), env={
        "OFFLOAD_WEBHOOK_SECRETS": f"ops:{SECRET}", "OFFLOAD_WEBHOOK_ALLOWLIST": "127.0.0.1/32"})
    job_id = platform.submit_probe({"callback_url": f"http://127.0.0.1:{port}/h"}).json()["id"]
    platform.wait(job_id, tenant="ops")
    platform.workers["ocr"].signal(signal.SIGKILL)
    wait_for(lambda: len(received) >= 1, 30, "the webhook")
    time.sleep(1.0)
    assert len(received) == 1 and json.loads(received[0][1])["job"]["id"] == job_id


@pytest.fixture
def drip_receiver():
    """A receiver that answers one byte a second, forever (until the test ends)."""
    attempts: list[float] = []
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            attempts.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            while not stop.is_set():
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                stop.wait(1.0)

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], attempts
    stop.set()
    server.shutdown()
