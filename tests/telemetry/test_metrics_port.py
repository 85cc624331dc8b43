"""The API services' metrics live on a port of their own, and a scrape costs Redis nothing.

The API port is what the Ingress routes to the world: it has no /metrics. The status service
reads its Redis-backed gauges (queues, running and dead jobs, Redis memory) in the background,
so however often it is scraped, Redis sees no more commands.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis as redis_client

from tests.support.platform import PlatformFactory
from tests.support.processes import RedisServer, wait_for
from tests.telemetry.prom import scrape, value


def _llen_calls(client: redis_client.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_llen", {}).get("calls", 0))


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own: its command counts are server-wide, and the session's Redis
    also serves other suites' platforms, whose status services refresh their gauges meanwhile."""
    server = RedisServer().start()
    yield server
    server.stop()


def test_metrics_are_served_on_their_own_port_only_and_scrapes_do_no_redis_work(own_redis, tmp_path):
    factory = PlatformFactory(redis_url=own_redis.url, log_dir=tmp_path)
    try:
        _scrapes_do_no_redis_work(factory.start(workers=(), env={"OFFLOAD_METRICS_REFRESH_SECONDS": "3600"}),
                                  own_redis.url)
    finally:
        factory.stop_all()


def _scrapes_do_no_redis_work(platform, redis_url: str) -> None:
    for service in (platform.gateway, platform.status):
        r = httpx.get(f"{service.url}/metrics", timeout=10)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    gateway = scrape(platform.metrics_url("gateway"))
    assert value(gateway, "offload_http_connections_limit") == 2048
    status = scrape(platform.metrics_url("status"))
    assert value(status, "offload_sse_streams_limit") == 1000
    assert value(status, "offload_redis_used_memory_bytes") > 0
    assert ("offload_queue_depth", frozenset({("queue", "llm.normal")})) in status

    client = redis_client.Redis.from_url(redis_url)
    try:
        before = _llen_calls(client)
        for _ in range(50):
            scrape(platform.metrics_url("status"))
        assert _llen_calls(client) == before, "a scrape read the queues from Redis"
    finally:
        client.close()
    assert httpx.get(platform.metrics_url("status").replace("/metrics", "/other"), timeout=5).status_code == 404


def test_the_status_service_refreshes_its_queue_gauges_in_the_background(platform_factory):
    platform = platform_factory.start(workers=(), env={"OFFLOAD_METRICS_REFRESH_SECONDS": "0.5"})

    def depth() -> float:
        return value(scrape(platform.metrics_url("status")), "offload_queue_depth", queue="llm.normal")

    assert depth() == 0
    for _ in range(3):
        assert platform.submit_llm({"prompt": "wait", "max_tokens": 4}).status_code == 202
    wait_for(lambda: depth() == 3, 10, "the queue gauge to show the three jobs")
