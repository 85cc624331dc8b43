"""RQ with its default worker (a work horse forked per job), results kept in Redis (default TTL)."""

from __future__ import annotations

import os
import sys

from redis import Redis
from rq import Queue

from . import PAYLOAD, noop_result

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "bench"


def noop(payload: dict) -> dict:
    return noop_result(payload)


def prefill(n: int) -> None:
    queue = Queue(QUEUE, connection=Redis.from_url(URL))
    for start in range(0, n, 500):
        batch = [Queue.prepare_data(noop, args=(PAYLOAD,)) for _ in range(min(500, n - start))]
        queue.enqueue_many(batch)


if __name__ == "__main__":
    if sys.argv[1] == "prefill":
        prefill(int(sys.argv[2]))
