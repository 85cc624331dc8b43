"""A batch of 50,000 lines on a real platform: accepted whole, then fed a few lines at a time
(OFFLOAD_BATCH_MAX_IN_FLIGHT_PER_TENANT, at `low`), so another tenant's `normal` jobs run at
once while it goes on; cancelled, it ends with the output of the lines that ran."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import redis

from offload_core.jobs import keys
from tests.batches.conftest import batch_env, chat_line, jsonl

LINES = 50_000
IN_FLIGHT = 16


@pytest.fixture(scope="module")
def platform(sim, redis_server, tmp_path_factory):
    from tests.support.platform import PlatformFactory
    from tests.support.processes import TEST_DB

    redis_server.flush(TEST_DB)
    factory = PlatformFactory(redis_url=redis_server.db_url(TEST_DB), log_dir=tmp_path_factory.mktemp("bounds"))
    try:
        yield factory.start(workers=("llm",), env=batch_env(sim, OFFLOAD_BATCH_MAX_IN_FLIGHT_PER_TENANT=str(IN_FLIGHT)))
    finally:
        factory.stop_all()


def test_50000_lines_trickle_in_and_another_tenants_normal_jobs_are_not_starved(platform, redis_server):
    from tests.support.processes import TEST_DB

    r = redis.Redis.from_url(redis_server.db_url(TEST_DB))
    http = httpx.Client(base_url=platform.gateway.url, timeout=120)
    data = jsonl([chat_line(n) for n in range(LINES)])
    uploaded = http.post("/v1/files", files={"file": ("big.jsonl", data, "application/jsonl")},
                         data={"purpose": "batch"}, headers=platform.headers())
    assert uploaded.status_code == 200, uploaded.text
    created = http.post("/v1/batches", headers=platform.headers(), json={
        "input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert created.status_code == 200, created.text
    batch = created.json()
    assert batch["status"] == "in_progress" and batch["request_counts"]["total"] == LINES

    # While it runs: alice's unfinished jobs (queued or running) and the low queue stay within
    # the in-flight limit, sampled every 20 ms.
    peaks = {"active": 0, "queued": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peaks["active"] = max(peaks["active"], int(r.hget(keys.tenant_usage("alice"), "active") or 0))
            peaks["queued"] = max(peaks["queued"], int(r.llen("llm.low")))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        deadline = time.monotonic() + 60
        while http.get(f"/v1/batches/{batch['id']}", headers=platform.headers()).json()[
                "request_counts"]["completed"] < 2 * IN_FLIGHT:
            assert time.monotonic() < deadline, "the batch's first lines did not run in 60 s"
            time.sleep(0.1)
        # Bob's normal jobs, submitted in the middle of alice's batch, run ahead of its lines.
        bob = [http.post("/v1/jobs/llm", headers=platform.headers("bob"),
                         json={"messages": [{"role": "user", "content": f"Bob {i}?"}], "max_tokens": 4}).json()["id"]
               for i in range(5)]
        deadline = time.monotonic() + 30
        for job_id in bob:
            while platform.job(job_id, tenant="bob")["state"] != "succeeded":
                assert time.monotonic() < deadline, f"bob's job {job_id} did not finish in 30 s behind the batch"
                time.sleep(0.05)
        running = http.get(f"/v1/batches/{batch['id']}", headers=platform.headers()).json()
        assert running["status"] == "in_progress" and running["request_counts"]["completed"] < LINES // 2
    finally:
        stop.set()
        sampler.join(5)
    assert 0 < peaks["active"] <= IN_FLIGHT and peaks["queued"] <= IN_FLIGHT, peaks

    cancelling = http.post(f"/v1/batches/{batch['id']}/cancel", headers=platform.headers())
    assert cancelling.status_code == 200 and cancelling.json()["status"] == "cancelling"
    deadline = time.monotonic() + 60
    while (done := http.get(f"/v1/batches/{batch['id']}", headers=platform.headers()).json())["status"] != "cancelled":
        assert time.monotonic() < deadline, f"still {done['status']} 60 s after the cancel"
        time.sleep(0.1)
    output = http.get(f"/v1/files/{done['output_file_id']}/content", headers=platform.headers()).text.splitlines()
    assert len(output) == done["request_counts"]["completed"] < LINES
    assert int(r.hget(keys.tenant_usage("alice"), "active") or 0) == 0  # nothing of it left queued
