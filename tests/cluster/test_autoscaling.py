"""KEDA scales a worker on real Redis list lengths, end to end: the operator activates the
Deployment from zero, the HPA controller reads the external metric through the aggregated API
(KEDA's adapter) and sets the replicas, and both scale back to zero once the lists are empty.
The times are recorded and printed."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from tests.cluster.clusterkit import ClusterHelm, merged, record, wait_until
from tests.support.platform import default_env
from tests.support.processes import Service, free_port

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


def test_busy_pods_are_kept_while_their_jobs_run_and_work_for_two_pods_gets_two(
        keda, api: client.ApiClient, helm: ClusterHelm, restricted_namespace, external_redis_values,
        keda_redis, tmp_path: Path) -> None:
    """Scale on work (issue 22, 2.10): KEDA reads the type's running jobs from the real status
    service (GET /scaling/ocr on its metrics port, on loopback where KEDA runs) besides the Redis lists. Two running
    jobs on single-job pods and empty lists keep two pods; when they finish the worker goes to
    zero. With the status service gone, KEDA's fallback leaves the lists to decide: they still
    wake the worker from zero."""
    from offload_core.jobs.store import JobStore, NewJob, connect
    from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
    from offload_core.settings import Settings
    from offload_core.types import JobState, JobType, Priority

    redis_url = keda_redis.url
    status_port, metrics_port = free_port(), free_port()
    status = Service("offload-status", {**default_env(redis_url), "OFFLOAD_ENV": "dev", "OFFLOAD_PORT": str(status_port),
                                        "OFFLOAD_METRICS_PORT": str(metrics_port),
                                        "OFFLOAD_API_KEYS": "ops:" + "k" * 32}, tmp_path, port=status_port).start()
    scaling_url = f"http://127.0.0.1:{metrics_port}"  # /scaling/<type> is on the metrics port, as in the chart
    try:
        ns = restricted_namespace("busy")
        values = merged(external_redis_values(api, ns), {
            "components": {"gateway": {"replicas": 1}, "status": {"replicas": 1},
                           "workerOcr": {"concurrency": 1, "autoscaling": FAST}, "workerLlm": {"enabled": False}},
            "keda": {"runningJobs": {"statusUrl": scaling_url, "failureThreshold": 2}}})
        helm.apply("install", "busy", ns, values)
        apps = client.AppsV1Api(api)

        def replicas() -> tuple[int, int]:
            d = apps.read_namespaced_deployment("busy-offload-worker-ocr", ns)
            return d.spec.replicas or 0, d.status.ready_replicas or 0

        wait_until("the idle worker at zero", lambda: replicas() == (0, 0), timeout=60)
        keda_redis.client().delete("ocr.high", "ocr.normal", "ocr.low")

        # Two OCR jobs, submitted and started the way the gateway and a worker do it.
        settings = Settings(env="dev", redis_url=redis_url)

        async def submit() -> list[str]:
            store = JobStore(connect(settings), settings)
            try:
                outcomes = [await store.submit(NewJob(type=JobType.OCR, tenant="ops", priority=Priority.NORMAL,
                                                      payload=b"png", params={"languages": "eng"})) for _ in range(2)]
                return [o.job_id for o in outcomes]
            finally:
                await store.redis.aclose()

        job_ids = asyncio.run(submit())
        worker = WorkerJobStore(connect_sync(settings), settings)
        claimed = {}
        for job_id in job_ids:
            assert worker.redis.rpop("ocr.normal") is not None  # taken off the list, as kombu does
            claim = worker.claim(job_id, f"pod-{job_id[:4]}:1:w", JobType.OCR)
            assert claim.status == "claimed"
            claimed[job_id] = claim.job
        assert httpx.get(f"{scaling_url}/scaling/ocr").json() == {"job_type": "ocr", "queued": 0, "running": 2}

        start = time.monotonic()
        wait_until("two pods for two running jobs", lambda: replicas() == (2, 2), timeout=90, interval=0.25)
        record("scale on work: 0 -> 2 replicas for 2 running jobs (lists empty)", time.monotonic() - start)
        # Longer than the cooldown, the HPA's scale-down window and several polls: still two.
        held = time.monotonic()
        while time.monotonic() - held < FAST["cooldownPeriod"] + 6:
            assert replicas()[0] == 2, "KEDA scaled in pods that were running jobs"
            time.sleep(0.5)

        for job_id, job in claimed.items():
            assert worker.finish(job, f"pod-{job_id[:4]}:1:w", JobState.SUCCEEDED, result={"pages": []})
        start = time.monotonic()
        wait_until("back to zero once the jobs finished", lambda: replicas() == (0, 0), timeout=120, interval=0.25)
        record("scale on work: 2 -> 0 after both jobs finished", time.monotonic() - start)

        # The status service goes away: after failureThreshold failed reads KEDA falls back to the
        # queue, so queued jobs still wake the worker.
        status.stop()
        time.sleep(FAST["pollingInterval"] * 3)
        keda_redis.client().lpush("ocr.normal", *[f"job-{i}" for i in range(3)])
        start = time.monotonic()
        wait_until("woken from zero by the lists alone", lambda: replicas()[0] == 2, timeout=90, interval=0.25)
        record("fallback: status unreachable, 0 -> 2 on 3 queued jobs alone", time.monotonic() - start)
        so = client.CustomObjectsApi(api).get_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects",
                                                                       "busy-offload-worker-ocr")
        health = so["status"].get("health", {})
        assert any(h.get("status") == "Failing" for h in health.values()), so["status"]
        keda_redis.client().delete("ocr.normal")
    finally:
        status.stop()
