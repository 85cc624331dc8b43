"""Autoscaling, simulated: the KEDA + HPA loop as the chart configures it, driven by a burst.

This is how we reason about scale beyond one machine: a model, not a measurement. Its inputs
are the chart's own ScaledObject values (charts/offload/values.yaml,
components.<worker>.autoscaling) and a per-replica throughput measured by this benchmark.

The model, step by step (1 s):
- KEDA reads the summed list length every `pollingInterval`; above `activationListLength` it
  activates the Deployment (0 -> 1); after `cooldownPeriod` s at or below it, back to
  `minReplicaCount` (0 = scale to zero).
- While active, the HPA (every 15 s, its default sync period) wants ceil(backlog / listLength)
  replicas, within [max(1, min), max], limited by the scale-up policy (`Pods` per `periodSeconds`)
  and, going down, by the stabilization window (the highest wish in the window) and the
  scale-down policy.
- A new replica works after `pod_start_s` (scheduling, image already on the node, process start,
  model load); each working replica drains `per_replica_jobs_per_s`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from .procs import REPO

HPA_SYNC_S = 15


def chart_autoscaling(worker: str = "workerOcr", values: Path = REPO / "charts/offload/values.yaml") -> dict[str, Any]:
    data = yaml.safe_load(values.read_text())
    return data["components"][worker]["autoscaling"]


def _policy_limit(policies: list[dict[str, Any]], current: int, history: list[tuple[float, int]], now: float,
                  up: bool) -> int:
    """How many pods the HPA may add (up) or remove (down) now, given its policies (max of them)."""
    allowed = 0
    for p in policies:
        window = [n for t, n in history if now - t < p["periodSeconds"]]
        moved = sum(window)
        value = p["value"] if p["type"] == "Pods" else math.ceil(current * p["value"] / 100)
        allowed = max(allowed, value - moved)
    return max(0, allowed)


def simulate(cfg: dict[str, Any], *, burst: int, per_replica_jobs_per_s: float, pod_start_s: float,
             min_replicas: int | None = None, seconds: int = 1800) -> dict[str, Any]:
    min_r = cfg["minReplicaCount"] if min_replicas is None else min_replicas
    max_r, target = cfg["maxReplicaCount"], cfg["listLength"]
    activation, poll, cooldown = cfg["activationListLength"], cfg["pollingInterval"], cfg["cooldownPeriod"]
    up, down = cfg["scaleUp"], cfg["scaleDown"]
    backlog = float(burst)
    desired = min_r
    starting: list[float] = [0.0] * min_r  # ready times of replicas (0 = ready from the start)
    ups: list[tuple[float, int]] = []
    downs: list[tuple[float, int]] = []
    wishes: list[tuple[float, int]] = []
    last_active = 0.0
    active = min_r > 0
    timeline: list[dict[str, float]] = []
    drained_at = None
    # The burst lands at t=0, halfway between two of KEDA's reads (and the HPA's syncs).
    poll_phase, hpa_phase = poll // 2, HPA_SYNC_S // 2
    for t in range(seconds + 1):
        now = float(t)
        if t % poll == poll_phase:  # KEDA's own loop: activation and scale to zero
            if backlog > activation:
                last_active = now
                if not active:
                    active = True
                    desired = max(desired, 1)
                    ups.append((now, 1))
            elif active and min_r == 0 and now - last_active >= cooldown:
                active, desired = False, 0
        if active and t % HPA_SYNC_S == hpa_phase:
            wish = max(max(1, min_r), min(max_r, math.ceil(backlog / target)))
            wishes.append((now, wish))
            if wish > desired:
                add = min(wish - desired, _policy_limit(up["policies"], desired, ups, now, True))
                if add:
                    desired += add
                    ups.append((now, add))
            else:
                window = [w for ts, w in wishes if now - ts <= down["stabilizationWindowSeconds"]]
                stable = max(window) if window else wish
                if stable < desired:
                    remove = min(desired - stable, _policy_limit(down["policies"], desired, downs, now, False))
                    if remove:
                        desired -= remove
                        downs.append((now, remove))
        while len(starting) < desired:
            starting.append(now + pod_start_s)
        del starting[desired:]
        working = sum(1 for ready in starting if ready <= now)
        backlog = max(0.0, backlog - working * per_replica_jobs_per_s)
        if backlog == 0 and drained_at is None:
            drained_at = now
        timeline.append({"t": now, "backlog": backlog, "replicas": float(desired), "working": float(working)})
    return {"min_replicas": min_r, "drained_at_s": drained_at, "peak_replicas": max(p["replicas"] for p in timeline),
            "first_work_s": next((p["t"] for p in timeline if p["working"] > 0), None),
            "back_to_min_s": next((p["t"] for p in timeline if drained_at is not None and p["t"] > drained_at
                                   and p["replicas"] <= min_r), None),
            "replica_seconds": sum(p["replicas"] for p in timeline),
            "timeline": timeline}


def run(*, burst: int, per_replica_jobs_per_s: float, pod_start_s: float, worker: str = "workerOcr",
        seconds: int = 1800) -> dict[str, Any]:
    cfg = chart_autoscaling(worker)
    scenarios = {
        "scale_to_zero": simulate(cfg, burst=burst, per_replica_jobs_per_s=per_replica_jobs_per_s,
                                  pod_start_s=pod_start_s, min_replicas=0, seconds=seconds),
        "min_one": simulate(cfg, burst=burst, per_replica_jobs_per_s=per_replica_jobs_per_s,
                            pod_start_s=pod_start_s, min_replicas=1, seconds=seconds),
    }
    return {"worker": worker, "chart": cfg, "burst": burst, "per_replica_jobs_per_s": per_replica_jobs_per_s,
            "pod_start_s": pod_start_s, "scenarios": scenarios}
