"""Bulk work on dead letters (admin keys): requeue many at once, or purge them for good, leaving
nothing behind: no record, no index entry, no Idempotency-Key, no object in S3."""

from __future__ import annotations

import json

import httpx
import redis

from tests.e2e.test_job_lifecycle import assert_problem
from tests.support.platform import Platform, PlatformFactory

ADMIN = "ops"
# An LLM worker whose server is a closed port, with one attempt per job: its jobs die at once.
FAILING_LLM = {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": "http://127.0.0.1:9/v1",
               "OFFLOAD_LLM_MAX_HTTP_ATTEMPTS": "1", "OFFLOAD_LLM_MAX_ATTEMPTS": "1"}


def bulk(platform: Platform, action: str, body: dict, tenant: str = ADMIN) -> httpx.Response:
    return httpx.post(f"{platform.gateway.url}/v1/dead-letters/{action}", json=body, headers=platform.headers(tenant),
                      timeout=30)


def dead_jobs(platform: Platform, factory: PlatformFactory, n: int, env: dict, **headers) -> list[str]:
    ids = [platform.submit_llm({"prompt": f"Hi {i}", "max_tokens": 2}, **{k: f"{v}-{i}" for k, v in headers.items()})
           .json()["id"] for i in range(n)]
    worker = factory.start_worker("llm", factory.env(**env, **FAILING_LLM))
    for job_id in ids:
        assert platform.wait(job_id, timeout=60)["state"] == "dead"
    worker.stop()
    return ids


def test_admins_requeue_dead_jobs_in_bulk_and_tenants_may_not(platform_factory: PlatformFactory):
    platform = platform_factory.start(workers=())
    ids = dead_jobs(platform, platform_factory, 3, {})
    refused = assert_problem(bulk(platform, "requeue", {"job_ids": ids}, tenant="alice"), 403)
    assert "admin" in refused["detail"]
    assert_problem(bulk(platform, "requeue", {"job_ids": ids, "all": True}), 422)  # one way or the other

    missing = "00000000-0000-4000-8000-000000000000"
    out = bulk(platform, "requeue", {"job_ids": ids[:2] + [missing]}).json()
    assert out["requeued"] == ids[:2] and out["skipped"] == [{"id": missing, "reason": "missing"}]
    assert out["remaining"] == 1
    assert [platform.job(i)["state"] for i in ids] == ["queued", "queued", "dead"]
    out = bulk(platform, "requeue", {"all": True, "type": "llm"}).json()
    assert out == {"requeued": [ids[2]], "skipped": [], "remaining": 0}


def test_a_purge_leaves_nothing_of_a_dead_job_behind(platform_factory: PlatformFactory, s3_server, s3_bucket,
                                                    redis_url: str):
    env = s3_server.env(s3_bucket, OFFLOAD_PAYLOAD_S3_THRESHOLD_BYTES="0")  # every input in the bucket
    platform = platform_factory.start(workers=(), env=env)
    ids = dead_jobs(platform, platform_factory, 2, env, **{"Idempotency-Key": "purge-me"})
    store = redis.Redis.from_url(redis_url)
    assert len(s3_objects(s3_server, s3_bucket)) == 2  # dead jobs keep their inputs, to be requeued
    alive = platform.submit_llm({"prompt": "keep me", "max_tokens": 2}).json()["id"]

    assert_problem(bulk(platform, "purge", {"job_ids": ids}, tenant="alice"), 403)
    out = bulk(platform, "purge", {"job_ids": [*ids, alive]}).json()
    assert out["purged"] == ids and out["remaining"] == 0
    assert out["skipped"] == [{"id": alive, "reason": "not_dead (queued)"}]

    for job_id in ids:
        assert httpx.get(f"{platform.status.url}/v1/jobs/{job_id}", headers=platform.headers(), timeout=10).status_code == 404
        assert not store.exists(f"offload:job:{job_id}", f"offload:job:{job_id}:events")
        assert store.zscore("offload:tenant:alice:jobs", job_id) is None
        assert store.zscore("offload:dead", job_id) is None and store.zscore("offload:tenant:alice:dead", job_id) is None
    listed = httpx.get(f"{platform.status.url}/v1/jobs", headers=platform.headers(), timeout=10).json()["jobs"]
    assert [j["id"] for j in listed] == [alive]
    assert [key for key in s3_objects(s3_server, s3_bucket)] == [alive_key(store, alive)]
    # The Idempotency-Key is forgotten with its job: the same request makes a new job.
    again = platform.submit_llm({"prompt": "Hi 0", "max_tokens": 2}, **{"Idempotency-Key": "purge-me-0"})
    assert again.status_code == 202 and again.json()["id"] != ids[0]


def s3_objects(s3_server, bucket: str) -> list[str]:
    listing = s3_server.request("GET", f"/{bucket}").text
    return [part.split("</Key>", 1)[0] for part in listing.split("<Key>")[1:]]


def alive_key(store: redis.Redis, job_id: str) -> str:
    return json.loads(store.hget(f"offload:job:{job_id}", "payload_ref"))["key"]
