"""Guarantee: the gateway stops taking jobs before Redis is full, and says so; jobs already taken
keep the room they need. A real redis-server with a small `maxmemory` is filled from outside;
the gateway (which reads `INFO memory` in the background, never per request) refuses submits
with 503 + Retry-After, the status service's gauges show the memory, and once room is made
submits are taken again.
"""

from __future__ import annotations

import pytest

from offload_core.jobs import keys
from tests.support.platform import PlatformFactory
from tests.support.processes import RedisServer, wait_for
from tests.telemetry.prom import scrape, value

MAXMEMORY = 8 * 1024 * 1024
JUNK = 64 * 1024


@pytest.fixture
def small_redis():
    server = RedisServer(appendonly=False).start()
    client = server.client()
    client.config_set("maxmemory", MAXMEMORY)
    client.config_set("maxmemory-policy", "noeviction")
    yield server
    client.close()
    server.cleanup()


@pytest.mark.slow
def test_submits_are_refused_near_maxmemory_and_taken_again_when_room_is_made(small_redis, tmp_path, figures):
    factory = PlatformFactory(redis_url=small_redis.url, log_dir=tmp_path)
    redis = small_redis.client()
    try:
        platform = factory.start(workers=(), env={"OFFLOAD_REDIS_MEMORY_CHECK_SECONDS": "0.2",
                                                  "OFFLOAD_METRICS_REFRESH_SECONDS": "0.2"})
        assert platform.submit_llm({"prompt": "before", "max_tokens": 4}).status_code == 202

        # Fill Redis from outside to 92% of its maxmemory (the gateway refuses from 90%).
        junk = 0
        while redis.info("memory")["used_memory"] < 0.92 * MAXMEMORY:
            redis.set(f"junk:{junk}", b"j" * JUNK)
            junk += 1
        index = keys.tenant_jobs("alice")
        jobs_before = redis.zcard(index)

        answers = []
        wait_for(lambda: answers.append(platform.submit_llm({"prompt": "full?", "max_tokens": 4}))
                 or answers[-1].status_code == 503, 5, "the gateway to see Redis nearly full")
        refused = answers[-1]
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "30"
        detail = refused.json()["detail"]
        assert "of its 8.0 MiB limit" in detail and "Nothing was stored" in detail, detail
        # Refused before the body was even read: nothing of it reached Redis.
        assert redis.zcard(index) == jobs_before + sum(a.status_code == 202 for a in answers)
        # Reads go on.
        assert platform.job(redis.zrange(index, 0, 0)[0].decode())["state"] == "queued"

        # The status service's gauges follow at its next refresh (every 0.2 s here).
        wait_for(lambda: value(scrape(platform.metrics_url("status")), "offload_redis_used_memory_bytes")
                 >= 0.9 * MAXMEMORY, 5, "the status service's gauge to see Redis nearly full")
        assert value(scrape(platform.metrics_url("status")), "offload_redis_maxmemory_bytes") == MAXMEMORY
        assert value(scrape(platform.metrics_url("gateway")), "offload_http_refused_total", reason="redis_memory") >= 1

        redis.delete(*[f"junk:{i}" for i in range(junk)])
        wait_for(lambda: platform.submit_llm({"prompt": "room again", "max_tokens": 4}).status_code == 202, 5,
                 "submits to be taken again")
        figures.record("17-redis-memory-guard", maxmemory_mib=MAXMEMORY // 2**20, refused_from="90%",
                       refused_with="503 + Retry-After: 30", check_interval_s=0.2)
    finally:
        redis.close()
        factory.stop_all()
