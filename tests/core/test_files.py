"""Against a real Redis: the file store's quota accounting, expiry (bytes given back to the
tenant), and reconciliation that counts files in the tenant's bytes."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
import redis

from offload_core.files.record import FileRecord
from offload_core.files.store import FileStore
from offload_core.jobs import keys
from offload_core.jobs.store import connect
from offload_core.maintenance.reconcile import Reconciler
from offload_core.payloads.s3 import BytesSource
from offload_core.settings import Settings


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url, file_retention_seconds=60, max_queued_bytes_per_tenant=10_000)


def run(settings: Settings, work):
    async def go():
        client = connect(settings)
        try:
            return await work(FileStore(client, settings), client)
        finally:
            await client.aclose()
    return asyncio.run(go())


class Upload(BytesSource):
    def open(self):
        return io.BytesIO(self.data)


def test_expired_files_are_deleted_and_their_bytes_given_back(settings):
    r = redis.Redis.from_url(settings.redis_url)

    async def work(files: FileStore, client) -> tuple[FileRecord, FileRecord]:
        _, old = await files.create_upload("alice", "a.jsonl", "batch", Upload(b"x" * 3000))
        _, young = await files.create_upload("alice", "b.jsonl", "batch", Upload(b"y" * 2000))
        await client.hset(keys.file(young.id), "expires_at", repr(time.time() + 3600))
        await client.zadd(keys.FILES_EXPIRY, {young.id: time.time() + 3600})
        assert await files.expire_due(now=time.time() + 61) == 1
        return old, young

    old, young = run(settings, work)
    assert not r.exists(keys.file(old.id)) and not r.exists(keys.file_content(old.id))
    assert r.exists(keys.file(young.id))
    assert int(r.hget(keys.tenant_usage("alice"), "bytes")) == 2000
    assert r.zrange(keys.tenant_files("alice"), 0, -1) == [young.id.encode()]


def test_an_upload_over_the_byte_quota_leaves_no_content_behind(settings):
    r = redis.Redis.from_url(settings.redis_url)

    async def work(files: FileStore, client):
        return await files.create_upload("alice", "big.jsonl", "batch", Upload(b"z" * 10_001))

    status, record = run(settings, work)
    assert status == "bytes_exceeded"
    assert not r.exists(keys.file(record.id)) and not r.exists(keys.file_content(record.id))
    assert int(r.hget(keys.tenant_usage("alice"), "bytes") or 0) == 0


def test_reconciliation_counts_the_tenants_files_in_its_bytes(settings):
    r = redis.Redis.from_url(settings.redis_url)

    async def work(files: FileStore, client):
        await files.create_upload("alice", "a.jsonl", "batch", Upload(b"x" * 1234))
        await client.hset(keys.tenant_usage("alice"), "bytes", 99)  # drifted
        report = await Reconciler(client, settings, tenants=lambda: ["alice"]).run_once()
        return report

    report = run(settings, work)
    assert report.drift["alice"] == (0, 99 - 1234)
    assert int(r.hget(keys.tenant_usage("alice"), "bytes")) == 1234
