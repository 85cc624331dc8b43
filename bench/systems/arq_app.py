"""arq (asyncio) with its defaults: up to 10 jobs at once per process, results kept an hour."""

from __future__ import annotations

import asyncio
import os
import sys

from arq import create_pool
from arq.connections import RedisSettings

from . import PAYLOAD, noop_result

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def noop(ctx: dict, payload: dict) -> dict:
    return noop_result(payload)


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(URL)


async def _prefill(n: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(URL))
    for start in range(0, n, 20):  # arq's pool allows few connections
        await asyncio.gather(*(pool.enqueue_job("noop", PAYLOAD) for _ in range(min(20, n - start))))
    await pool.aclose()


if __name__ == "__main__":
    if sys.argv[1] == "prefill":
        asyncio.run(_prefill(int(sys.argv[2])))
