"""The S3 payload store against a real S3-compatible server (s3proxy, `make s3-server`): large
payloads stream in and come back verified, a missing object fails permanently and says so,
wrong bytes are caught on the way in and on the way out, deletes are idempotent, the CA bundle
option really decides whom we trust, and no credential reaches a log line."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import secrets
import tracemalloc

import pytest

from offload_core.observability.logs import JsonFormatter, redact_settings
from offload_core.payloads import metrics
from offload_core.payloads.errors import PayloadCorrupt, PayloadMissing, PayloadUnavailable
from offload_core.payloads.ref import PayloadRef
from offload_core.payloads.s3 import S3Config, S3PayloadStore
from offload_core.payloads.spool import DiskBudget, SpooledPayload
from offload_core.settings import Settings
from tests.support.processes import free_port
from tests.support.s3server import S3Server, unavailable_reason

MiB = 1024 * 1024


def _store(server: S3Server, bucket: str, **overrides) -> S3PayloadStore:
    env = server.env(bucket)
    config = S3Config(endpoint_url=env["OFFLOAD_S3_ENDPOINT_URL"], bucket=bucket,
                      access_key_id=server.access_key_id, secret_access_key=server.secret_access_key,
                      prefix="jobs/", ca_file=server.ca_file)
    fields = {**config.__dict__, **overrides}
    return S3PayloadStore(S3Config(**fields))


def _spooled(data: bytes, tmp_path) -> SpooledPayload:
    spool = SpooledPayload(limit=len(data) + 1, memory_bytes=MiB, budget=DiskBudget(1 << 40), directory=str(tmp_path))
    for start in range(0, len(data), 64 * 1024):
        spool.write(data[start:start + 64 * 1024])
    return spool.seal()


def _bytes_total(operation: str) -> float:
    return metrics.PAYLOAD_BYTES.labels(store="s3", operation=operation)._value.get()


def test_a_large_payload_streams_in_from_its_spool_file_and_comes_back_verified(s3_server, s3_bucket, tmp_path):
    data = os.urandom(24 * MiB)
    spool = _spooled(data, tmp_path)
    assert spool.path is not None, "24 MiB must be spooled to a file, not memory"
    store = _store(s3_server, s3_bucket)
    key = store.key_for("job-large")
    async def put_traced() -> tuple[PayloadRef, int]:
        await store.put(store.key_for("warm-up"), b"opens the connection pool")  # not part of the figures
        nonlocal put_before
        put_before = _bytes_total("put")
        tracemalloc.start()
        try:
            ref = await store.put(key, spool)
            return ref, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    put_before, got_before = 0.0, _bytes_total("get")
    ref, peak = asyncio.run(put_traced())
    # Streamed: the put never held more than a few chunks of the 24 MiB body (~0.5 MiB seen).
    assert peak < 4 * MiB, f"the put allocated {peak / MiB:.1f} MiB for a 24 MiB body"

    assert ref == PayloadRef(store="s3", bucket=s3_bucket, key="jobs/job-large",
                             sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert PayloadRef.from_json(ref.to_json()) == ref
    assert store.get(ref) == data
    assert _bytes_total("put") - put_before == len(data)
    assert _bytes_total("get") - got_before == len(data)
    spool.cleanup()


def test_a_missing_object_fails_permanently_and_says_so(s3_server, s3_bucket):
    store = _store(s3_server, s3_bucket)
    ref = PayloadRef(store="s3", bucket=s3_bucket, key=store.key_for("never-stored"), sha256="0" * 64, size=10)
    with pytest.raises(PayloadMissing) as info:
        store.get(ref)
    assert info.value.retryable is False
    assert "not in object storage" in info.value.message and "never-stored" in info.value.message
    assert info.value.as_record()["type"] == "PayloadMissing"


def test_a_body_that_does_not_match_its_checksum_is_refused_and_nothing_is_stored(s3_server, s3_bucket):
    store = _store(s3_server, s3_bucket)

    class Lying:
        """Bytes whose announced SHA-256 is another payload's (a spool bug, bytes changed in transit)."""
        size = 1000
        sha256 = hashlib.sha256(b"something else").hexdigest()

        def open(self):
            return io.BytesIO(b"x" * 1000)

    with pytest.raises(PayloadUnavailable) as info:
        asyncio.run(store.put(store.key_for("lying"), Lying()))
    assert "HTTP 400" in info.value.message
    ref = PayloadRef(store="s3", bucket=s3_bucket, key=store.key_for("lying"), sha256=Lying.sha256, size=1000)
    with pytest.raises(PayloadMissing):
        store.get(ref)


def test_an_object_replaced_behind_the_records_back_is_caught_on_read(s3_server, s3_bucket):
    store = _store(s3_server, s3_bucket)
    key = store.key_for("replaced")
    original = asyncio.run(store.put(key, b"the document as submitted"))
    asyncio.run(store.put(key, b"the document as submitted, then changed"))  # longer
    with pytest.raises(PayloadCorrupt) as info:
        store.get(original)
    assert info.value.retryable is False
    assert f"larger than the {original.size} bytes stored" in info.value.message
    asyncio.run(store.put(key, b"THE DOCUMENT AS SUBMITTED"))  # same size, other bytes
    with pytest.raises(PayloadCorrupt, match="SHA-256 differs"):
        store.get(original)


def test_delete_removes_the_object_and_deleting_it_again_is_fine(s3_server, s3_bucket):
    store = _store(s3_server, s3_bucket)
    ref = asyncio.run(store.put(store.key_for("to-delete"), b"payload" * 100))
    deleted_before = _bytes_total("delete")
    store.delete(ref)
    with pytest.raises(PayloadMissing):
        store.get(ref)
    store.delete(ref)  # a job's end can be recorded twice; the second delete finds nothing
    asyncio.run(store.adelete(ref))
    assert _bytes_total("delete") - deleted_before == 3 * ref.size

    other = asyncio.run(store.put(store.key_for("async-delete"), b"y" * 10))
    asyncio.run(store.adelete(other))
    with pytest.raises(PayloadMissing):
        store.get(other)


def test_an_unreachable_server_is_retryable_after_the_bounded_attempts():
    store = S3PayloadStore(S3Config(endpoint_url=f"http://127.0.0.1:{free_port()}", bucket="b", access_key_id="k",
                                    secret_access_key="s", max_attempts=2, connect_timeout_seconds=1))
    ref = PayloadRef(store="s3", bucket="b", key="k", sha256="0" * 64, size=1)
    with pytest.raises(PayloadUnavailable) as info:
        store.get(ref)
    assert info.value.retryable is True
    assert "ConnectError" in info.value.message and "after 2 attempts" in info.value.message
    with pytest.raises(PayloadUnavailable):  # the APIs see a StoreUnavailable: 503 + Retry-After
        asyncio.run(store.put("k", b"x"))


def test_wrong_credentials_are_a_retryable_refusal_that_points_at_the_configuration(s3_server, s3_bucket):
    store = _store(s3_server, s3_bucket, secret_access_key="not-the-secret")
    with pytest.raises(PayloadUnavailable) as info:
        asyncio.run(store.put(store.key_for("x"), b"x"))
    assert "HTTP 403" in info.value.message and "credentials" in info.value.message


@pytest.fixture(scope="module")
def https_s3_server():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = S3Server(https=True).start()
    yield server
    server.cleanup()


def test_the_ca_bundle_option_decides_whom_the_store_trusts(https_s3_server):
    bucket = https_s3_server.create_bucket("tls-" + secrets.token_hex(4))
    trusting = _store(https_s3_server, bucket)
    ref = asyncio.run(trusting.put(trusting.key_for("tls"), b"over TLS"))
    assert trusting.get(ref) == b"over TLS"

    system_trust = _store(https_s3_server, bucket, ca_file=None)
    with pytest.raises(PayloadUnavailable, match="ConnectError"):
        system_trust.get(ref)


def test_credentials_never_reach_the_logs(s3_server, s3_bucket, monkeypatch):
    settings = Settings(env="dev", **{k.removeprefix("OFFLOAD_").lower(): v for k, v in s3_server.env(s3_bucket).items()})
    assert s3_server.secret_access_key not in repr(settings)
    assert s3_server.access_key_id not in repr(settings)
    store = S3PayloadStore.from_settings(settings)
    for text in (repr(store), repr(store.config), repr(store._signer)):
        assert s3_server.secret_access_key not in text and s3_server.access_key_id not in text

    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    level = root.level
    root.setLevel(logging.DEBUG)  # setLevel, not the attribute: it clears the loggers' level caches
    try:
        _log_a_session(store, settings)
    finally:
        root.setLevel(level)
    text = lines.getvalue()
    assert "HTTP Request: PUT" in text and "HTTP 403" in text and "signed request" in text  # it was logged
    assert s3_server.secret_access_key not in text
    assert s3_server.access_key_id not in text
    json.loads(text.splitlines()[-1])  # still one JSON object per line


def _log_a_session(store: S3PayloadStore, settings: Settings) -> None:
    """Real calls (httpx logs each request), then what an operator might log while debugging."""
    redact_settings(settings)
    log = logging.getLogger("offload.test")

    ref = asyncio.run(store.put(store.key_for("logged"), b"z" * 5000))
    store.get(ref)
    store.delete(ref)
    url, signed = store._request("GET", ref.bucket, ref.key, "0" * 64)
    log.debug("signed request %s %s", url, signed)
    wrong = S3PayloadStore(S3Config(**{**store.config.__dict__, "secret_access_key": "wrong-secret-value"}))
    try:
        wrong.get(ref)
    except PayloadUnavailable:
        log.exception("payload read failed; config %r", settings)
