"""What a worker Deployment and its KEDA ScaledObject say, in the terms the status API shows.

Pure functions over the objects as the Kubernetes API serialises them (camelCase JSON). The
status service's cluster view and the kind end-to-end suite both use them, so "rolled out" and
"ScaledObject ready" mean the same thing in the dashboard and in the tests.
"""

from __future__ import annotations

from typing import Any

from offload_core.types import WORKER_TYPES

KubeObject = dict[str, Any]

COMPONENT_LABEL = "app.kubernetes.io/component"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# The chart's component label of each worker -> the job type it runs.
WORKER_COMPONENTS = {f"worker-{jt.value}": jt for jt in WORKER_TYPES}

# KEDA's defaults when a ScaledObject leaves the bounds out.
KEDA_DEFAULT_MIN_REPLICAS, KEDA_DEFAULT_MAX_REPLICAS = 0, 100


def worker_selector(release: str = "") -> str:
    """The label selector of the chart's worker Deployments and ScaledObjects: those of one
    release, or of every release in the namespace when `release` is empty."""
    selector = f"{COMPONENT_LABEL} in ({','.join(sorted(WORKER_COMPONENTS))})"
    return f"{INSTANCE_LABEL}={release},{selector}" if release else selector


def replica_counts(deployment: KubeObject) -> dict[str, int]:
    """`desired` is spec.replicas, which KEDA's HPA sets when it manages the Deployment;
    the rest are the controller's counts of the pods that exist."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    return {
        "desired": spec.get("replicas", 1),  # the API server defaults an absent count to 1
        "current": status.get("replicas", 0),
        "updated": status.get("updatedReplicas", 0),
        "ready": status.get("readyReplicas", 0),
        "available": status.get("availableReplicas", 0),
    }


def rollout_status(deployment: KubeObject) -> tuple[bool, str]:
    """(done, what it waits for), judged as `kubectl rollout status` does."""
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    status = deployment.get("status") or {}
    if status.get("observedGeneration", 0) < generation:
        return False, "waiting for the controller to observe the new spec"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return False, f"rollout failed: {condition.get('message') or 'progress deadline exceeded'}"
    n = replica_counts(deployment)
    if n["updated"] < n["desired"]:
        return False, f"{n['updated']} of {n['desired']} replicas updated"
    if n["current"] > n["updated"]:
        return False, f"{n['current'] - n['updated']} old replicas pending termination"
    if n["available"] < n["updated"]:
        return False, f"{n['available']} of {n['updated']} updated replicas available"
    return True, "rolled out"


def _condition(conditions: list[KubeObject], kind: str) -> bool | None:
    """True or False as the condition says; None when it is absent or Unknown."""
    for condition in conditions:
        if condition.get("type") == kind:
            return {"True": True, "False": False}.get(condition.get("status"))
    return None


def scale_target(scaled_object: KubeObject) -> str | None:
    """The name of the Deployment a ScaledObject scales (None when it scales another kind)."""
    ref = (scaled_object.get("spec") or {}).get("scaleTargetRef") or {}
    return ref.get("name") if ref.get("kind", "Deployment") == "Deployment" else None


def scaled_object_state(scaled_object: KubeObject) -> dict[str, Any]:
    """KEDA's verdict on a ScaledObject: `ready` (KEDA can read its triggers and owns an HPA),
    `active` (a trigger is over its activation threshold, so the workers run), `fallback`
    (scaling on the fallback count because the triggers fail) and `paused`."""
    spec, status = scaled_object.get("spec") or {}, scaled_object.get("status") or {}
    conditions = status.get("conditions") or []
    return {
        "name": (scaled_object.get("metadata") or {}).get("name"),
        "ready": _condition(conditions, "Ready"),
        "active": _condition(conditions, "Active"),
        "fallback": _condition(conditions, "Fallback"),
        "paused": _condition(conditions, "Paused"),
        "min_replicas": spec.get("minReplicaCount", KEDA_DEFAULT_MIN_REPLICAS),
        "max_replicas": spec.get("maxReplicaCount", KEDA_DEFAULT_MAX_REPLICAS),
        "hpa": status.get("hpaName"),
        "last_active_time": status.get("lastActiveTime"),
        "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")} for c in conditions],
    }


def worker_state(deployment: KubeObject, scaled_object: KubeObject | None) -> dict[str, Any]:
    """One worker Deployment as GET /v1/queues shows it under `cluster.workers`."""
    metadata = deployment.get("metadata") or {}
    component = (metadata.get("labels") or {}).get(COMPONENT_LABEL, "")
    job_type = WORKER_COMPONENTS.get(component)
    rolled_out, rollout = rollout_status(deployment)
    return {
        "job_type": job_type.value if job_type else None,
        "deployment": metadata.get("name"),
        "replicas": replica_counts(deployment),
        "rolled_out": rolled_out,
        "rollout": rollout,
        "scaled_object": scaled_object_state(scaled_object) if scaled_object is not None else None,
    }
