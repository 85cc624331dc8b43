"""The replica count KEDA arrives at for a worker Deployment, from the same inputs.

The chart gives each worker a ScaledObject whose redis triggers (one per priority list) are
summed by `advanced.scalingModifiers`; the HPA then wants ceil(total / listLength) replicas,
within [min, max], and zero only when the total is at or below the activation threshold.
"""

from __future__ import annotations

import math

from offload_core.queue.routing import queues_of
from offload_core.types import JobType


def scaled_queues(worker_type: JobType | str) -> list[str]:
    """The lists a worker type's ScaledObject reads: its own queues, and for the OCR worker the
    probe queues too (every worker runs probe jobs; the OCR worker, with no model to load, is
    the one woken for them). The chart's triggers (templates/keda.yaml) list the same."""
    worker_type = JobType(worker_type)
    return queues_of(worker_type) + (queues_of(JobType.PROBE) if worker_type is JobType.OCR else [])


def desired_replicas(backlog: int, *, list_length: int, activation_list_length: int,
                     min_replicas: int, max_replicas: int) -> int:
    if backlog <= activation_list_length:
        return min_replicas
    wanted = math.ceil(backlog / list_length)
    return max(min_replicas, min(max_replicas, max(1, wanted)))
