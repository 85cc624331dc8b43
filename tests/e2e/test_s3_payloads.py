"""The S3 claim check end to end, with a real S3-compatible server (s3proxy): an input at or above
the threshold goes to the bucket, the record keeps only its reference, the worker reads it from
there, and the object is deleted once the job succeeds; an object that went missing fails the job
clearly; small inputs stay inline."""

from __future__ import annotations

import json

import redis

from tests.support.documents import png_document


def _objects(s3_server, bucket: str) -> list[str]:
    listing = s3_server.request("GET", f"/{bucket}").text
    return [part.split("</Key>", 1)[0] for part in listing.split("<Key>")[1:]]


def test_large_inputs_travel_through_the_bucket_and_leave_it_when_the_job_succeeds(
        platform_factory, s3_server, s3_bucket, redis_url):
    env = s3_server.env(s3_bucket, OFFLOAD_PAYLOAD_S3_THRESHOLD_BYTES="1000")
    platform = platform_factory.start(workers=("ocr", "llm"), env=env)
    store = redis.Redis.from_url(redis_url)
    document = png_document()
    ocr = platform.submit_ocr(document.data).json()["id"]
    small = platform.submit_llm({"prompt": "Hi", "max_tokens": 2}).json()["id"]
    big = platform.submit_llm({"prompt": "Say hi. " + "x" * 2000, "max_tokens": 2}).json()["id"]

    ref = json.loads(store.hget(f"offload:job:{ocr}", "payload_ref"))
    assert ref["size"] == len(document.data) and store.hget(f"offload:job:{ocr}", "payload") == b""
    assert store.hget(f"offload:job:{small}", "payload_ref") is None, "a small input stays inline"

    for job_id in (ocr, small, big):
        assert platform.wait(job_id, timeout=120)["state"] == "succeeded"
    pages = platform.result(ocr)["pages"]
    assert len(pages) == 1 and document.texts[0].split()[0] in pages[0]["text"], "the worker read the upload"
    assert _objects(s3_server, s3_bucket) == [], "every succeeded job's object was deleted"


def test_an_object_that_went_missing_fails_its_job_with_the_reason(platform_factory, s3_server, s3_bucket, redis_url):
    env = s3_server.env(s3_bucket, OFFLOAD_PAYLOAD_S3_THRESHOLD_BYTES="0")
    platform = platform_factory.start(workers=(), env=env)
    job_id = platform.submit_llm({"prompt": "Hi", "max_tokens": 2}).json()["id"]
    (key,) = _objects(s3_server, s3_bucket)
    assert s3_server.request("DELETE", f"/{s3_bucket}/{key}").status_code == 204
    platform_factory.start_worker("llm", platform_factory.env(**env))
    failed = platform.wait(job_id, timeout=60)
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert failed["error"]["type"] == "PayloadMissing" and failed["error"]["retryable"] is False
