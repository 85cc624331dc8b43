"""The Files API on a real gateway: upload limits, the byte quota and file count, reads, delete,
and a file a batch still reads."""

from __future__ import annotations

import httpx
import pytest
import redis

from offload_core.jobs import keys
from tests.batches.conftest import CHAT_MODEL, chat_line, jsonl

LIMITS = {"OFFLOAD_FILE_MAX_BYTES": "4096", "OFFLOAD_FILE_MAX_PER_TENANT": "3",
          "OFFLOAD_MAX_QUEUED_BYTES_PER_TENANT": "8192", "OFFLOAD_LLM_MODEL": CHAT_MODEL}


@pytest.fixture
def apis(platform_factory):
    return platform_factory.start(workers=(), env=LIMITS)


def upload(platform, data: bytes, *, purpose: str | None = "batch", name: str = "in.jsonl", tenant: str = "alice"):
    fields = {"purpose": purpose} if purpose is not None else {}
    return httpx.post(f"{platform.gateway.url}/v1/files", files={"file": (name, data, "application/jsonl")},
                      data=fields, headers=platform.headers(tenant), timeout=30)


def test_a_file_is_stored_read_back_listed_and_deleted(apis):
    data = jsonl([chat_line(1), chat_line(2)])
    r = upload(apis, data)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["object"] == "file" and f["id"].startswith("file-") and f["bytes"] == len(data)
    assert f["purpose"] == "batch" and f["status"] == "processed" and f["expires_at"] > f["created_at"]
    base, h = f"{apis.gateway.url}/v1/files", apis.headers()
    assert httpx.get(f"{base}/{f['id']}", headers=h).json() == f
    content = httpx.get(f"{base}/{f['id']}/content", headers=h)
    assert content.content == data and content.headers["content-length"] == str(len(data))
    listing = httpx.get(base, headers=h).json()
    assert listing["object"] == "list" and [x["id"] for x in listing["data"]] == [f["id"]]
    assert httpx.get(f"{base}/{f['id']}", headers=apis.headers("bob")).status_code == 404  # another tenant's
    assert httpx.delete(f"{base}/{f['id']}", headers=h).json() == {"id": f["id"], "object": "file", "deleted": True}
    gone = httpx.get(f"{base}/{f['id']}/content", headers=h)
    assert gone.status_code == 404 and gone.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("data, purpose, status, words", [
    (b"x" * 5000, "batch", 413, "4096 bytes"),
    (b"{}\n", "fine-tune", 422, "purpose must be one of batch"),
    (b"{}\n", None, 422, "purpose must be one of batch"),
    (b"", "batch", 422, "empty"),
])
def test_refused_uploads_say_what_to_fix(apis, data, purpose, status, words):
    r = upload(apis, data, purpose=purpose)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json") and words in r.json()["detail"]


def test_files_count_in_the_byte_quota_until_deleted(apis, redis_url):
    store = redis.Redis.from_url(redis_url)
    first = upload(apis, b"a" * 4000).json()
    assert int(store.hget(keys.tenant_usage("alice"), "bytes")) == 4000
    second = upload(apis, b"b" * 4000).json()
    refused = upload(apis, b"c" * 1000)
    assert refused.status_code == 429 and "byte" in refused.json()["detail"] and refused.headers["retry-after"]
    # A job's input meets the same quota: the files leave no room for it.
    job = apis.submit_llm({"prompt": "x" * 300, "max_tokens": 8})
    assert job.status_code == 429 and "bytes" in job.json()["detail"]
    httpx.delete(f"{apis.gateway.url}/v1/files/{first['id']}", headers=apis.headers())
    assert int(store.hget(keys.tenant_usage("alice"), "bytes")) == 4000
    assert upload(apis, b"c" * 1000).status_code == 200
    assert second["id"] != first["id"]


def test_a_tenant_has_at_most_its_file_count(apis):
    for n in range(3):
        assert upload(apis, b"%d" % n).status_code == 200
    refused = upload(apis, b"4")
    assert refused.status_code == 429 and "3 files" in refused.json()["detail"]
    assert upload(apis, b"4", tenant="bob").status_code == 200  # another tenant's count is its own


def test_a_file_a_batch_reads_cannot_be_deleted(apis):
    f = upload(apis, jsonl([chat_line(1)])).json()
    batch = httpx.post(f"{apis.gateway.url}/v1/batches", headers=apis.headers(), timeout=30, json={
        "input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert batch.status_code == 200, batch.text
    refused = httpx.delete(f"{apis.gateway.url}/v1/files/{f['id']}", headers=apis.headers())
    assert refused.status_code == 409 and batch.json()["id"] in refused.json()["detail"]
