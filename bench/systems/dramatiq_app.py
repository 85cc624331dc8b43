"""Dramatiq on its Redis broker (messages acknowledged after the actor ran), results stored."""

from __future__ import annotations

import os
import sys

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from . import PAYLOAD, noop_result

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "bench"

broker = RedisBroker(url=URL)
broker.add_middleware(Results(backend=RedisBackend(url=URL)))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, store_results=True, max_retries=3)
def noop(payload: dict) -> dict:
    return noop_result(payload)


def prefill(n: int) -> None:
    for _ in range(n):
        noop.send(PAYLOAD)


if __name__ == "__main__":
    if sys.argv[1] == "prefill":
        prefill(int(sys.argv[2]))
