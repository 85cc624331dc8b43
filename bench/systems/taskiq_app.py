"""taskiq on taskiq-redis's stream broker (consumer groups: acknowledged after the task ran),
results in Redis."""

from __future__ import annotations

import asyncio
import os
import sys

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from . import PAYLOAD, noop_result

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "bench"

broker = RedisStreamBroker(url=URL, queue_name=QUEUE).with_result_backend(
    RedisAsyncResultBackend(redis_url=URL, prefix_str="taskiq-result"))


@broker.task(task_name="bench.noop")
async def noop(payload: dict) -> dict:
    return noop_result(payload)


async def _prefill(n: int) -> None:
    await broker.startup()
    for start in range(0, n, 200):
        await asyncio.gather(*(noop.kiq(PAYLOAD) for _ in range(min(200, n - start))))
    await broker.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "prefill":
        asyncio.run(_prefill(int(sys.argv[2])))
