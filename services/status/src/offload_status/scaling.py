"""GET /scaling/<job_type> on the metrics port: the type's queued and running jobs, for KEDA's
metrics-api trigger.

The chart's ScaledObjects read `running` from here and the queue lengths from Redis, so that a
worker with busy pods and an empty queue keeps its pods (offload_core.queue.scaling has the
formula). No API key: KEDA has none, and the numbers are those /metrics exposes. It is served by
the metrics port (offload_core.web.metrics_server), which no Ingress routes and NetworkPolicy
opens to Prometheus and KEDA only. One answer costs Redis one round trip of O(1) reads; the
metrics server bounds how many run at once.
"""

from __future__ import annotations

import json

from offload_core.errors import StoreUnavailable
from offload_core.jobs.store import JobStore
from offload_core.types import JobType
from offload_core.web.metrics_server import ExtraRoute

PREFIX = "/scaling/"
JOB_TYPES = {t.value: t for t in JobType}


def scaling_route(store: JobStore) -> ExtraRoute:
    async def answer(path: str) -> tuple[int, bytes] | None:
        job_type = JOB_TYPES.get(path.removeprefix(PREFIX)) if path.startswith(PREFIX) else None
        if job_type is None:
            return None  # the metrics server's 404
        try:
            work = await store.work(job_type)
        except StoreUnavailable as exc:  # KEDA counts a failed read and, past its threshold, falls back
            return 503, json.dumps({"detail": f"the job store cannot be read: {exc}"}).encode()
        return 200, json.dumps({"job_type": job_type.value, **work}).encode()

    return answer
