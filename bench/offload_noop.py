"""`python -m bench.offload_noop`: a real Offload worker whose handler does no work.

The worker is the product's own (`offload_core.worker.main.run_worker`: the same Celery app,
guarantees, runner, lease heartbeat, state scripts, metrics, tracing hooks, health port and JSON
logs as `offload-worker-llm`); only the handler is empty, so a job pays every cost of the
platform and none of the compute. It consumes the `llm.*` queues, so it must run against a
Redis of its own (the benchmark's), never next to a real LLM worker.

A job's parameter `bench_sleep` (seconds) makes the handler sleep, to give jobs a known duration
(the priority benchmark).
"""

from __future__ import annotations

import time
from typing import Any

from offload_core.settings import Settings
from offload_core.types import JobType
from offload_core.worker.handler import JobContext, JobHandler
from offload_core.worker.main import run_worker


def make_handler(settings: Settings) -> JobHandler:
    def handle(ctx: JobContext) -> dict[str, Any]:
        sleep = float(ctx.params.get("bench_sleep") or 0)
        if sleep:
            time.sleep(sleep)
        return {"ok": True, "bytes": len(ctx.payload)}

    return handle


def main() -> None:
    run_worker(JobType.LLM, make_handler)


if __name__ == "__main__":
    main()
