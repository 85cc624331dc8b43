"""GET /scaling/{job_type}: the type's queued and running jobs, for KEDA's metrics-api trigger.

The chart's ScaledObjects read `running` from here and the queue lengths from Redis, so that a
worker with busy pods and an empty queue keeps its pods (offload_core.queue.scaling has the
formula). No API key: KEDA has none, and the numbers are those /metrics exposes. It is meant
for the metrics port, which NetworkPolicy opens to Prometheus and KEDA only and no Ingress
routes; until the status service serves one, it is on the API port outside /v1, which the
chart's Ingress does not route either.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from offload_core.types import JobType
from offload_core.web.deps import StoreDep

router = APIRouter(tags=["scaling"], include_in_schema=False)


@router.get("/scaling/{job_type}")
async def work(job_type: JobType, store: StoreDep) -> dict[str, Any]:
    return {"job_type": job_type.value, **await store.work(job_type)}
