"""Webhooks end to end: a finished job POSTs its signed summary to the callback URL."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from offload_core.webhooks.signing import SIGNATURE_HEADER, verify_signature
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
    log = platform.workers["llm"].log_text()
    assert f"job {job_id} webhook attempt 1: the callback answered 503; retrying in" in log
    assert f"job {job_id} webhook delivered (attempt 2, HTTP 204)" in log


def test_tenant_without_a_webhook_secret_cannot_register_a_callback(platform_factory):
    platform = platform_factory.start(workers=(), env={"OFFLOAD_WEBHOOK_SECRETS": f"bob:{SECRET}"})
    r = platform.submit_llm({"prompt": "Hi", "callback_url": "https://hooks.example.com/x"})
    assert r.status_code == 422 and "secret" in r.json()["detail"]
