"""Raw Celery 5.7 on Redis, the way a user would set it up.

BENCH_CELERY_MODE=guaranteed: Offload's delivery settings (acks late, reject on worker lost,
prefetch 1, JSON, the same visibility timeout); `defaults`: Celery's defaults (acks early,
prefetch 4 per process). Both record each result in Redis (the redis result backend).
"""

from __future__ import annotations

import os
import sys
import time

from celery import Celery

from . import PAYLOAD, noop_result

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
MODE = os.environ.get("BENCH_CELERY_MODE", "guaranteed")
QUEUE = "bench"

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(task_default_queue=QUEUE, broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)
if MODE == "guaranteed":
    app.conf.update(
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": 3600},
    )


@app.task(name="bench.noop")
def noop(payload: dict) -> dict:
    return noop_result(payload)


@app.task(name="bench.started")
def started() -> float:
    """The time the task started (queue-latency benchmark)."""
    return time.time()


def prefill(n: int) -> None:
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            noop.apply_async((PAYLOAD,), producer=producer)


if __name__ == "__main__":
    if sys.argv[1] == "prefill":
        prefill(int(sys.argv[2]))
