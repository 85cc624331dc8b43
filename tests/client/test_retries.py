"""Retries on 503 and 429 with the server's Retry-After, against a real gateway whose Redis goes
away (503: a proxy in front of Redis refuses connections) or whose tenant quota is full (429)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from offload_client import OffloadClient, RateLimitedError, RetryPolicy, ServiceUnavailableError
from tests.client.conftest import SHORT
from tests.client.proxy import CuttableProxy
from tests.support.platform import Platform, PlatformFactory
from tests.support.processes import RedisServer, wait_for

REDIS_DB = 3  # its own database: the quota below counts only this module's jobs


@pytest.fixture(scope="module")
def redis_proxy(redis_server: RedisServer) -> Iterator[CuttableProxy]:
    proxy = CuttableProxy("127.0.0.1", redis_server.port)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def apis(redis_server: RedisServer, redis_proxy: CuttableProxy,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Gateway and status only (jobs stay queued), reaching Redis through the proxy, with room
    for one unfinished job per tenant."""
    with redis_server.client() as redis:
        redis.execute_command("SELECT", REDIS_DB)
        redis.flushdb()
    factory = PlatformFactory(redis_url=f"redis://127.0.0.1:{redis_proxy.port}/{REDIS_DB}",
                              log_dir=tmp_path_factory.mktemp("platform"))
    try:
        yield factory.start(workers=(), env={"OFFLOAD_MAX_QUEUED_PER_TENANT": "1"})
    finally:
        factory.stop_all()


class RecordingTransport(httpx.HTTPTransport):
    """The real HTTP transport, noting each answer's status and the request's Idempotency-Key."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.seen.append((response.status_code, request.headers.get("Idempotency-Key")))
        return response


def client_for(platform: Platform, tenant: str, retry: RetryPolicy,
               transport: httpx.BaseTransport | None = None) -> OffloadClient:
    return OffloadClient(platform.gateway.url, status_url=platform.status.url, api_key=platform.keys[tenant],
                         retry=retry, transport=transport)


def test_a_submission_refused_with_503_is_retried_after_retry_after_and_stored_once(
        apis: Platform, redis_proxy: CuttableProxy):
    transport = RecordingTransport()
    redis_proxy.go_down()

    def back_after_a_refusal() -> None:
        try:
            wait_for(lambda: any(status == 503 for status, _ in transport.seen), 60, "the gateway to answer 503")
        finally:
            redis_proxy.come_back()  # while the client waits out Retry-After

    restorer = threading.Thread(target=back_after_a_refusal, daemon=True)
    restorer.start()
    with client_for(apis, "bob", RetryPolicy(max_retries=5, max_delay=30), transport) as client:
        job = client.submit_llm(**SHORT)
        restorer.join(timeout=60)
        assert client.get_job(job.id).state == "queued"
        listed = [j.id for j in client.iter_jobs()]
    statuses = [status for status, _ in transport.seen[:2]]
    assert statuses == [503, 202]
    # Both tries carried the same generated Idempotency-Key: one job, not one per try.
    keys = {key for _, key in transport.seen[:2]}
    assert len(keys) == 1 and None not in keys
    assert listed == [job.id]


def test_a_503_after_the_last_retry_is_raised_with_its_retry_after(apis: Platform, redis_proxy: CuttableProxy):
    redis_proxy.go_down()
    try:
        with client_for(apis, "ops", RetryPolicy(max_retries=0)) as client:
            with pytest.raises(ServiceUnavailableError) as unavailable:
                client.submit_llm(**SHORT)
    finally:
        redis_proxy.come_back()
    assert unavailable.value.status == 503 and unavailable.value.retry_after == 5
    assert "retry with the same Idempotency-Key" in unavailable.value.detail  # it may have been stored


def test_a_retry_after_longer_than_the_client_waits_raises_with_the_servers_advice(apis: Platform):
    with client_for(apis, "alice", RetryPolicy(max_retries=3, max_delay=5)) as client:
        first = client.submit_llm(**SHORT)
        with pytest.raises(RateLimitedError) as refused:
            client.submit_llm(**SHORT)
        listed = [j.id for j in client.iter_jobs()]
    problem = refused.value
    assert problem.status == 429 and problem.retry_after == 30 and "unfinished jobs" in problem.detail
    assert listed == [first.id]
