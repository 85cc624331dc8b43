"""A worker's log says why a job failed: the line for the outcome carries the error's type and
message, and whatever secret the message holds leaves the process redacted (the LLM key the
settings know, a bearer token, a password in a URL)."""

from __future__ import annotations

import json

from tests.support.platform import PlatformFactory
from tests.worker_llm.llm_peer import Reply, ScriptedPeer

KEY = "sk-offload-test-7c1f2e9a0b"
TOKEN = "upstream-token-93ab71c2"
PASSWORD = "hunter2-in-a-url"


def test_the_failed_job_line_gives_type_and_message_with_secrets_redacted(platform_factory: PlatformFactory):
    peer = ScriptedPeer().start()
    peer.script = [Reply(status=400, json_body={"error": {"message": (
        f"Incorrect API key provided: {KEY}. Sent Authorization: Bearer {TOKEN}; "
        f"try http://ops:{PASSWORD}@upstream.example/v1")}})]
    try:
        platform = platform_factory.start(workers=())
        worker = platform_factory.start_worker("llm", platform_factory.env(
            OFFLOAD_LLM_BACKEND="openai", OFFLOAD_LLM_BASE_URL=peer.base_url, OFFLOAD_LLM_API_KEY=KEY))
        job_id = platform.submit_llm({"prompt": "Hi", "max_tokens": 2}).json()["id"]
        assert platform.wait(job_id, timeout=60)["state"] == "failed"
    finally:
        peer.stop()
    text = worker.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    [line] = [r for r in lines if r["msg"].startswith(f"job {job_id} failed in ")]
    assert line["job_id"] == job_id and line["level"] == "info"
    assert "(attempt 1): PermanentJobError: the LLM server refused the request (HTTP 400): " in line["msg"]
    assert "Incorrect API key provided: [redacted]" in line["msg"]
    assert "Bearer [redacted]" in line["msg"] and "http://ops:[redacted]@upstream.example" in line["msg"]
    for secret in (KEY, TOKEN, PASSWORD):
        assert secret not in text
