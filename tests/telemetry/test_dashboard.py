"""The Grafana dashboard asks only for metrics the services really export, and it and the docs
carry exactly the queries of k8s/grafana/queries.yaml (tests/telemetry/dashboard.py)."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import offload_core.batches.coordinator  # noqa: F401 - registers the batch metrics
import offload_core.files.store  # noqa: F401 - registers the file metrics
import offload_core.jobs.metrics  # noqa: F401 - registers the job metrics
import offload_core.maintenance.reconcile  # noqa: F401 - registers the quota drift metrics
import offload_core.maintenance.webhooks  # noqa: F401 - registers the webhook delivery metrics
import offload_core.payloads.metrics  # noqa: F401 - registers the payload store metrics
import offload_core.web.limits  # noqa: F401 - registers the HTTP limit metrics
import offload_core.web.observability  # noqa: F401 - registers the HTTP metrics
import offload_core.web.queue_metrics  # noqa: F401 - registers the queue and Redis memory gauges
import offload_status.stream_slots  # noqa: F401 - registers the live stream gauges
from tests.telemetry import dashboard as made

DASHBOARD = made.DASHBOARD
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_sample_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("offload_"):
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def test_every_query_names_only_exported_metrics_and_every_metric_is_shown():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\boffload_[a-z_]+", expr)}
    exported = exported_sample_names()
    assert used <= exported, f"unknown metrics in the dashboard: {sorted(used - exported)}"
    shown_families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    all_families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in exported}
    assert all_families <= shown_families, f"metrics without a panel: {sorted(all_families - shown_families)}"


def test_panels_have_unique_ids_and_use_the_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {p["datasource"]["uid"] for p in dashboard["panels"] if p["type"] != "row"} == {"${datasource}"}
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]


def test_the_dashboard_file_is_made_from_the_queries_file():
    assert DASHBOARD.read_text() == made.dashboard_text(), "run `make dashboard` after editing k8s/grafana/queries.yaml"


def test_the_docs_list_exactly_the_queries_of_the_queries_file():
    assert made.DOCS.read_text() == made.current_docs(), "run `make dashboard` after editing k8s/grafana/queries.yaml"
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])]
    assert exprs == [q.expr for q in made.queries().values()]
