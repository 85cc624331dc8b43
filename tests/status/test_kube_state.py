"""How a worker Deployment and ScaledObject are judged: the rollout verdict kubectl gives, and
KEDA's conditions read as true, false or unknown."""

from __future__ import annotations

from offload_status.kube_state import rollout_status, scaled_object_state, worker_selector, worker_state

from tests.status.kube_api import deployment, scaled_object, selector_matches


def test_a_deployment_with_every_replica_updated_and_available_is_rolled_out() -> None:
    d = deployment("rel", "worker-ocr", replicas=2, current=2, updated=2, ready=2, available=2)
    assert rollout_status(d) == (True, "rolled out")


def test_a_rollout_waits_for_the_controller_then_new_replicas_then_old_ones_to_go() -> None:
    unobserved = deployment("rel", "worker-ocr", replicas=2, current=2, updated=2, ready=2, available=2,
                            generation=3, observed_generation=2)
    assert rollout_status(unobserved) == (False, "waiting for the controller to observe the new spec")
    updating = deployment("rel", "worker-ocr", replicas=3, current=3, updated=1, ready=3, available=3)
    assert rollout_status(updating) == (False, "1 of 3 replicas updated")
    old_left = deployment("rel", "worker-ocr", replicas=2, current=3, updated=2, ready=3, available=3)
    assert rollout_status(old_left) == (False, "1 old replicas pending termination")
    starting = deployment("rel", "worker-ocr", replicas=2, current=2, updated=2, ready=1, available=1)
    assert rollout_status(starting) == (False, "1 of 2 updated replicas available")


def test_a_rollout_past_its_progress_deadline_has_failed() -> None:
    d = deployment("rel", "worker-llm", replicas=1, current=1, updated=1, ready=0, available=0)
    d["status"]["conditions"][1].update(status="False", reason="ProgressDeadlineExceeded",
                                        message='ReplicaSet "rel-offload-worker-llm-1" has timed out progressing.')
    done, why = rollout_status(d)
    assert not done and why.startswith("rollout failed: ") and "timed out progressing" in why


def test_scaled_to_zero_counts_as_rolled_out() -> None:
    d = deployment("rel", "worker-llm", replicas=0, current=0, updated=0, ready=0, available=0)
    assert worker_state(d, None)["replicas"] == {"desired": 0, "current": 0, "updated": 0, "ready": 0, "available": 0}
    assert worker_state(d, None)["rolled_out"] is True


def test_scaledobject_conditions_read_as_true_false_or_unknown() -> None:
    so = scaled_object("rel", "worker-ocr", ready="True", active="False")
    state = scaled_object_state(so)
    assert (state["ready"], state["active"], state["fallback"], state["paused"]) == (True, False, False, False)
    assert state["hpa"] == "keda-hpa-rel-offload-worker-ocr"
    so["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]  # as KEDA creates it
    state = scaled_object_state(so)
    assert (state["ready"], state["active"]) == (None, None)


def test_scaledobject_bounds_fall_back_to_kedas_defaults() -> None:
    so = scaled_object("rel", "worker-ocr", ready="True", active="True")
    del so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]
    state = scaled_object_state(so)
    assert (state["min_replicas"], state["max_replicas"]) == (0, 100)


def test_the_worker_selector_picks_one_releases_workers_and_nothing_else() -> None:
    ours = [deployment("rel", c, replicas=1, current=1, updated=1, ready=1, available=1)
            for c in ("worker-ocr", "worker-llm")]
    others = [deployment("rel", "gateway", replicas=1, current=1, updated=1, ready=1, available=1),
              deployment("other", "worker-ocr", replicas=1, current=1, updated=1, ready=1, available=1)]
    selected = [d for d in ours + others if selector_matches(d["metadata"]["labels"], worker_selector("rel"))]
    assert selected == ours
    every_release = [d for d in ours + others if selector_matches(d["metadata"]["labels"], worker_selector())]
    assert len(every_release) == 3
