"""offload_core.queue.scaling: the replicas KEDA arrives at from the chart's formula, so the
status API (GET /v1/queues) says what the cluster will do. Running jobs keep busy pods; the
queue adds replicas on top; with concurrency 0 only the queue counts."""

from __future__ import annotations

import pytest

from offload_core.queue.scaling import desired_replicas

OCR = {"list_length": 5, "activation_list_length": 0, "min_replicas": 0, "max_replicas": 10}


@pytest.mark.parametrize(("backlog", "running", "concurrency", "wanted"), [
    (0, 0, 1, 0),     # nothing to do: zero
    (0, 3, 1, 3),     # three busy single-job pods, empty queue: all three kept
    (0, 2, 2, 1),     # two jobs fit one pod of concurrency 2
    (0, 5, 2, 3),
    (7, 0, 1, 2),     # queue only: ceil(7 / 5)
    (7, 3, 1, 5),     # busy pods plus the queue's share: 3 + 7 / 5 -> ceil(4.4)
    (0, 40, 1, 10),   # never above max
    (0, 3, 0, 0),     # concurrency 0: running jobs not counted, as before
    (4, 3, 0, 1),
])
def test_desired_replicas_count_running_jobs_against_pod_concurrency(backlog: int, running: int, concurrency: int,
                                                                     wanted: int) -> None:
    assert desired_replicas(backlog, running, **OCR, concurrency=concurrency) == wanted


def test_activation_and_bounds_apply_to_the_whole_formula() -> None:
    bounds = {**OCR, "activation_list_length": 2, "min_replicas": 1}
    assert desired_replicas(2, 0, **bounds, concurrency=1) == 1  # at the activation threshold: min
    assert desired_replicas(0, 1, **bounds, concurrency=1) == 1  # 1 running * 5 / 1 = 5 > 2: active
    assert desired_replicas(3, 0, **bounds, concurrency=1) == 1
