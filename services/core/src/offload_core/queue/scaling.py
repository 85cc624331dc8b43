"""The replica count KEDA arrives at for a worker Deployment, from the same inputs.

The chart gives each worker a ScaledObject whose redis triggers (one per priority list) are
added up by `advanced.scalingModifiers`, together with the type's running jobs (a metrics-api
trigger on the status service's GET /scaling/{type}) weighted so that `concurrency` running jobs
count as one replica's worth: composite = queued + running * list_length / concurrency. The HPA
then wants ceil(composite / list_length) replicas, within [min, max], and zero only when the
composite is at or below the activation threshold. So busy pods are kept while they run jobs,
and the queue adds replicas on top. `concurrency` 0 leaves running jobs out (queue only).
"""

from __future__ import annotations

import math

from offload_core.queue.routing import queues_of
from offload_core.types import SERVED_BY, JobType


def scaled_types(worker_type: JobType | str) -> list[JobType]:
    """The job types a worker type is scaled on: those it runs (SERVED_BY), except that only the
    OCR worker, with no model to load, is woken for probe jobs. The chart's triggers
    (templates/keda.yaml, `offload.scaledJobTypes`) list the same."""
    worker_type = JobType(worker_type)
    return [t for t in SERVED_BY[worker_type] if t is not JobType.PROBE or worker_type is JobType.OCR]


def scaled_queues(worker_type: JobType | str) -> list[str]:
    """The lists a worker type's ScaledObject reads: the queues of its scaled types."""
    return [q for t in scaled_types(worker_type) for q in queues_of(t)]


def composite(backlog: int, running: int = 0, *, list_length: int, concurrency: int = 0) -> float:
    """The value of the ScaledObject's formula (its target is list_length per replica)."""
    if concurrency <= 0:
        return float(backlog)
    return backlog + running * list_length / concurrency


def desired_replicas(backlog: int, running: int = 0, *, list_length: int, activation_list_length: int,
                     min_replicas: int, max_replicas: int, concurrency: int = 0) -> int:
    value = composite(backlog, running, list_length=list_length, concurrency=concurrency)
    if value <= activation_list_length:
        return min_replicas
    wanted = math.ceil(round(value / list_length, 9))  # 4 * 5 / 4 / 5 must be 1, not 1.0000000002
    return max(min_replicas, min(max_replicas, max(1, wanted)))
