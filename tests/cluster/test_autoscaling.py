"""KEDA scales a worker on real Redis list lengths, end to end: the operator activates the
Deployment from zero, the HPA controller reads the external metric through the aggregated API
(KEDA's adapter) and sets the replicas, and both scale back to zero once the lists are empty.
The times are recorded and printed."""

from __future__ import annotations

import math
import time

import pytest
from kubernetes import client

from tests.cluster.clusterkit import ClusterHelm, merged, record, wait_until

pytestmark = pytest.mark.timeout(300)

LIST_LENGTH, MAX_REPLICAS, JOBS = 2, 6, 7
FAST = {  # the scaling behaviour the test waits on, shortened; everything else is the chart's
    "minReplicaCount": 0, "maxReplicaCount": MAX_REPLICAS, "listLength": LIST_LENGTH, "activationListLength": 0,
    "pollingInterval": 2, "cooldownPeriod": 10,
    "scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}]},
    "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 10, "periodSeconds": 5}]},
}


def test_keda_scales_the_ocr_worker_from_zero_to_the_backlog_and_back_to_zero(
        keda, api: client.ApiClient, helm: ClusterHelm, restricted_namespace, external_redis_values,
        keda_redis) -> None:
    ns = restricted_namespace("autoscale")
    values = merged(external_redis_values(api, ns), {
        "components": {"gateway": {"replicas": 1}, "status": {"replicas": 1},
                       "workerOcr": {"autoscaling": FAST}, "workerLlm": {"enabled": False}},
        "tests": {"jobType": "ocr"}})
    helm.apply("install", "auto", ns, values)
    apps = client.AppsV1Api(api)
    deployment = "auto-offload-worker-ocr"

    def replicas() -> tuple[int, int]:
        d = apps.read_namespaced_deployment(deployment, ns)
        return d.spec.replicas or 0, d.status.ready_replicas or 0

    wait_until("the idle worker at zero", lambda: replicas() == (0, 0), timeout=60)
    redis = keda_redis.client()
    redis.delete("ocr.high", "ocr.normal", "ocr.low")

    start = time.monotonic()
    redis.lpush("ocr.normal", *[f"job-{i}" for i in range(JOBS)])
    wait_until("activation 0 -> 1", lambda: replicas()[0] >= 1, timeout=60, interval=0.25)
    record("KEDA scale-up: activation 0 -> 1 (jobs pushed to first replica wanted)", time.monotonic() - start)
    wanted = math.ceil(JOBS / LIST_LENGTH)
    wait_until(f"the HPA at ceil({JOBS}/{LIST_LENGTH}) = {wanted} ready replicas", lambda: replicas() == (wanted, wanted),
               timeout=90, interval=0.25)
    record(f"KEDA scale-up: 0 -> {wanted} replicas ready ({JOBS} queued jobs, listLength {LIST_LENGTH})",
           time.monotonic() - start)
    time.sleep(6)  # more than one HPA period and one polling interval: it stays at the backlog's size
    assert replicas() == (wanted, wanted)

    start = time.monotonic()
    redis.delete("ocr.normal")
    wait_until("back to zero", lambda: replicas() == (0, 0), timeout=120, interval=0.25)
    record(f"KEDA scale-down: {wanted} -> 0 after the lists emptied (cooldownPeriod {FAST['cooldownPeriod']} s)",
           time.monotonic() - start)
