"""The replica count KEDA arrives at for a worker Deployment, from the same inputs.

The chart gives each worker a ScaledObject whose redis triggers (one per priority list) are
summed by `advanced.scalingModifiers`; the HPA then wants ceil(total / listLength) replicas,
within [min, max], and zero only when the total is at or below the activation threshold.
"""

from __future__ import annotations

import math

from offload_core.queue.routing import queues_of
from offload_core.types import SERVED_BY, JobType


def scaled_queues(worker_type: JobType | str) -> list[str]:
    """The lists a worker type's ScaledObject reads: the queues of the types it runs
    (SERVED_BY), except that only the OCR worker, with no model to load, is woken for probe
    jobs. The chart's triggers (templates/keda.yaml) list the same."""
    worker_type = JobType(worker_type)
    return [q for t in SERVED_BY[worker_type] if t is not JobType.PROBE or worker_type is JobType.OCR
            for q in queues_of(t)]


def desired_replicas(backlog: int, *, list_length: int, activation_list_length: int,
                     min_replicas: int, max_replicas: int) -> int:
    if backlog <= activation_list_length:
        return min_replicas
    wanted = math.ceil(backlog / list_length)
    return max(min_replicas, min(max_replicas, max(1, wanted)))
