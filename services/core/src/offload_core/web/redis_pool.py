"""Redis clients of an API process, on pools that are sized and wait.

redis-py's default pool refuses at once ("Too many connections") when every connection is
busy, and its size is unbounded unless given. Here every pool has a size, and a request that
finds all connections busy waits up to `OFFLOAD_REDIS_POOL_TIMEOUT_SECONDS` for one, then
gets `StoreUnavailable` (503 + Retry-After) like any other Redis failure.

The connection options themselves (timeouts, health checks) are the store's
(`offload_core.jobs.store.connect`): only the pool is replaced.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection

from offload_core.jobs.store import connect
from offload_core.settings import Settings


def pooled_client(settings: Settings, *, max_connections: int | None = None) -> aioredis.Redis:
    """A client whose pool holds at most `max_connections` (default: OFFLOAD_REDIS_MAX_CONNECTIONS)."""
    template = connect(settings).connection_pool  # makes no connection: only its options are used
    pool = BlockingConnectionPool(
        max_connections=max_connections or settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_seconds,
        connection_class=template.connection_class,
        **template.connection_kwargs,
    )
    return aioredis.Redis.from_pool(pool)


def dedicated_connection(settings: Settings) -> AbstractConnection:
    """One connection outside any pool (connected on first use), with the store's options: for
    a reader that spends its life in a blocking read (the status service's live-event hub)."""
    template = connect(settings).connection_pool
    return template.connection_class(**template.connection_kwargs)
