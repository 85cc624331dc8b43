"""How full Redis is: `INFO memory`, read in the background, never per request.

Redis is the job store, the queues and (by default) the payload store, with eviction off (a
broker must not drop messages): at its `maxmemory` every write fails, the state changes of
running jobs included. So the gateway stops taking new jobs a little before that
(`OFFLOAD_REDIS_MEMORY_REFUSE_RATIO` of maxmemory, 0.9 by default), which leaves the rest for
the jobs already accepted to finish. Without a maxmemory nothing is refused: set one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from offload_core.web.limits import Refusal

log = logging.getLogger("offload.redis_memory")

REFUSED_RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True, slots=True)
class RedisMemory:
    used_bytes: int
    max_bytes: int  # 0: no maxmemory set


async def read_memory(redis: aioredis.Redis) -> RedisMemory:
    info = await redis.info("memory")
    return RedisMemory(int(info["used_memory"]), int(info.get("maxmemory", 0)))


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


class MemoryGuard:
    """The gateway's view of Redis memory, refreshed every `interval` seconds by `run()`;
    `refusal()` answers each submit from it without a Redis call."""

    def __init__(self, *, refuse_ratio: float, interval_seconds: float) -> None:
        self.refuse_ratio, self.interval = refuse_ratio, interval_seconds
        self.latest: RedisMemory | None = None

    async def run(self, redis: aioredis.Redis) -> None:
        while True:
            try:
                async with asyncio.timeout(max(1.0, self.interval)):
                    self.latest = await read_memory(redis)
            except (RedisError, OSError, TimeoutError, KeyError, ValueError) as exc:
                # Unknown is not full: a Redis that does not answer fails the submit by itself (503).
                self.latest = None
                log.debug("INFO memory failed: %s", exc)
            await asyncio.sleep(self.interval)

    def refusal(self) -> Refusal | None:
        memory = self.latest
        if memory is None or not memory.max_bytes or memory.used_bytes < self.refuse_ratio * memory.max_bytes:
            return None
        return Refusal(
            503, "Job store nearly full",
            f"Redis holds {_mib(memory.used_bytes)} of its {_mib(memory.max_bytes)} limit "
            f"({memory.used_bytes / memory.max_bytes:.0%}; new jobs are refused from {self.refuse_ratio:.0%}) "
            "until running jobs finish and old ones expire. Nothing was stored; submit again later.",
            "redis_memory", REFUSED_RETRY_AFTER_SECONDS)
