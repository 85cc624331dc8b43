"""The harness's arithmetic: medians, percentiles and ratios, and the autoscaling model."""

from __future__ import annotations

import pytest

from bench import autoscale
from bench.stats import percentile, ratio, spread_pct, summary


def test_percentile_interpolates_between_ranks():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 99) == 10
    assert percentile(list(range(101)), 99) == 99


def test_summary_and_ratio_pair_rounds_in_order():
    a, b = summary([10, 30, 20]), summary([5, 10, 10])
    assert (a["median"], a["min"], a["max"], a["n"]) == (20, 10, 30, 3)
    assert ratio(a, b)["samples"] == [2.0, 3.0, 2.0]
    assert spread_pct(a) == 50


def test_summary_refuses_no_rounds():
    with pytest.raises(ValueError):
        summary([])


CFG = {"minReplicaCount": 0, "maxReplicaCount": 10, "listLength": 5, "activationListLength": 0,
       "pollingInterval": 15, "cooldownPeriod": 300,
       "scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
       "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]}}


def test_scale_up_is_limited_by_the_policy_and_the_maximum():
    out = autoscale.simulate(CFG, burst=1000, per_replica_jobs_per_s=1.0, pod_start_s=0, seconds=600)
    replicas = [p["replicas"] for p in out["timeline"]]
    assert max(replicas) == 10
    steps = [b - a for a, b in zip(replicas, replicas[1:]) if b > a]
    assert max(steps) <= 4


def test_scale_to_zero_waits_for_the_cooldown_after_the_queue_empties():
    out = autoscale.simulate(CFG, burst=50, per_replica_jobs_per_s=1.0, pod_start_s=5, seconds=900)
    assert out["drained_at_s"] is not None
    assert out["back_to_min_s"] - out["drained_at_s"] >= CFG["cooldownPeriod"] - CFG["pollingInterval"]
    assert out["timeline"][-1]["replicas"] == 0


def test_a_minimum_of_one_starts_work_at_once():
    out = autoscale.simulate(CFG, burst=50, per_replica_jobs_per_s=1.0, pod_start_s=5, min_replicas=1, seconds=900)
    assert out["first_work_s"] == 0
    assert out["timeline"][-1]["replicas"] == 1


def test_the_chart_values_feed_the_model():
    cfg = autoscale.chart_autoscaling("workerOcr")
    assert {"minReplicaCount", "maxReplicaCount", "listLength", "pollingInterval", "cooldownPeriod"} <= cfg.keys()
