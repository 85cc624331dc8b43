"""The benchmark harness, run for seconds: it must produce well-formed figures, tables and charts.

No timing is asserted (the numbers depend on the machine); what is asserted is that every figure
is a real measurement (positive, median within its rounds), that the systems really recorded
their results, and that the report the harness writes is complete.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _figures(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every `stats.summary` figure in the results, with where it was found."""
    found = []
    if isinstance(node, dict):
        if {"median", "min", "max", "n", "samples"} <= node.keys():
            found.append((path, node))
        for key, value in node.items():
            found.extend(_figures(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_figures(value, f"{path}[{i}]"))
    return found


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench")
    doc = tmp / "BENCHMARKS.md"
    doc.write_text("# B\n\n<!-- bench:submit -->\nold\n<!-- /bench:submit -->\n\n"
                   "<!-- bench:worker -->\nold\n<!-- /bench:worker -->\n\ntext kept\n")
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--profile", "quick", "--sections", "submit,worker,autoscale,sse,llm_streams",
         "--systems", "offload,celery-guaranteed", "--out", str(tmp / "results.json"), "--charts", str(tmp / "charts"),
         "--doc", str(doc), "--logs", str(tmp / "logs")],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {"results": json.loads((tmp / "results.json").read_text()), "charts": tmp / "charts", "doc": doc}


def test_every_figure_is_a_median_within_its_rounds(quick_run):
    figures = _figures(quick_run["results"]["sections"])
    assert len(figures) >= 8
    for where, fig in figures:
        assert fig["n"] == len(fig["samples"]) >= 1, where
        assert fig["min"] <= fig["median"] <= fig["max"], where
        assert fig["min"] > 0, f"{where}: a measured figure must be positive"


def test_submit_path_compares_offload_with_the_bare_endpoint(quick_run):
    submit = quick_run["results"]["sections"]["submit"]
    for name in ("bare", "offload"):
        assert submit[name]["errors"] == 0  # every answer was a 202
        assert submit[name]["p50_ms"]["median"] <= submit[name]["p99_ms"]["median"]
    assert submit["ratio_rps"]["median"] == pytest.approx(
        submit["offload"]["rps"]["samples"][0] / submit["bare"]["rps"]["samples"][0])
    assert [p["fraction"] for p in submit["paced"]] == [0.5]
    assert submit["paced"][0]["rps"] > 0


def test_worker_path_systems_recorded_the_jobs_they_ran(quick_run):
    worker = quick_run["results"]["sections"]["worker"]
    assert set(worker["systems"]) == {"offload", "celery-guaranteed"}
    for name, system in worker["systems"].items():
        done = system["done_in_window"][0]
        assert done > 0, name
        # Results are counted after the window; each one counted was really written by the system.
        assert system["recorded"][0] >= done, name
    assert worker["ratio_vs_celery_guaranteed"]["n"] == 1


def test_autoscaling_model_drains_the_burst_and_scale_to_zero_starts_later(quick_run):
    scenarios = quick_run["results"]["sections"]["autoscale"]["scenarios"]
    zero, one = scenarios["scale_to_zero"], scenarios["min_one"]
    assert zero["drained_at_s"] is not None and one["drained_at_s"] is not None
    assert zero["first_work_s"] > one["first_work_s"] == 0
    assert zero["replica_seconds"] < one["replica_seconds"]


def test_live_events_reach_every_follower_once_and_the_other_tenant_is_answered(quick_run):
    sse = quick_run["results"]["sections"]["sse"]
    assert sse["followers_exact"] == [sse["followers"]]  # every event of its job, in order, once
    assert sse["events_received"] == sse["events_sent"] and sse["events_sent"][0] >= sse["followers"]
    assert sse["errors"] == [0]
    assert sse["status_redis_connections"][0] <= 65  # the pool and the hub's one, not one per follower


def test_llm_streams_ran_every_job_through_one_worker_and_the_direct_client(quick_run):
    streams = quick_run["results"]["sections"]["llm_streams"]
    assert streams["server_peak_in_flight"] == streams["jobs"]  # the quick run's 32 jobs all at once
    for name in ("offload", "direct"):
        assert streams["jobs_per_s"][name]["median"] > 0
        assert streams["ttft_p50_ms"][name]["median"] >= streams["ttft_s"] * 1000  # never before the server's
    assert streams["worker_rss_mib"]["processes"] == 1


def test_report_writes_charts_and_fills_only_the_marked_tables(quick_run):
    for name in ("worker_path.png", "submit_latency.png", "autoscale.png"):
        path = quick_run["charts"] / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            assert image.width > 300 and image.height > 150
    text = quick_run["doc"].read_text()
    assert "old" not in text and "text kept" in text
    assert "| Offload gateway `POST /v1/jobs/llm` |" in text
    assert "Celery, same guarantees" in text
