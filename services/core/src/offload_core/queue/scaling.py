"""The replica count KEDA arrives at for a worker Deployment, from the same inputs.

The chart gives each worker a ScaledObject whose redis triggers (one per priority list) are
summed by `advanced.scalingModifiers`; the HPA then wants ceil(total / listLength) replicas,
within [min, max], and zero only when the total is at or below the activation threshold.
"""

from __future__ import annotations

import math


def desired_replicas(backlog: int, *, list_length: int, activation_list_length: int,
                     min_replicas: int, max_replicas: int) -> int:
    if backlog <= activation_list_length:
        return min_replicas
    wanted = math.ceil(backlog / list_length)
    return max(min_replicas, min(max_replicas, max(1, wanted)))
