"""The chart's monitoring add-ons: the PrometheusRule (only where the Prometheus operator serves
its kind, as KEDA's objects need KEDA) and the Grafana dashboard ConfigMap for Grafana's
sidecar. The rules themselves are tested with promtool in tests/telemetry/test_alert_rules.py."""

from __future__ import annotations

import json

import pytest

from tests.chart.chartkit import CHART, NAMESPACE, RELEASE, KEDA_API, Helm

PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
RULE_ON = {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}}}}
DASHBOARD_ON = {"metrics": {"grafanaDashboard": {"enabled": True}}}


def test_neither_is_made_by_default(helm: Helm):
    rendered = helm.template(None, api_versions=(PROMETHEUS_RULE_API, KEDA_API))
    assert not rendered.of_kind("PrometheusRule")
    assert not rendered.has("ConfigMap", f"{RELEASE}-offload-grafana-dashboard")


def test_the_rule_is_made_only_where_the_operator_serves_prometheusrules(helm: Helm):
    assert not helm.template(RULE_ON, api_versions=(KEDA_API,)).of_kind("PrometheusRule")
    [rule] = helm.template(RULE_ON, api_versions=(PROMETHEUS_RULE_API,)).of_kind("PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_thresholds_reach_the_rules(helm: Helm):
    values = {"metrics": {"prometheusRule": {
        "enabled": True, "oldestQueuedJobSeconds": 90, "deadLettersWindow": "1h", "noLiveWorkerFor": "3m",
        "redisMemoryRatio": 0.75, "sseStreamsRatio": 0.5}}}
    [rule] = helm.template(values, api_versions=(PROMETHEUS_RULE_API,)).of_kind("PrometheusRule")
    rules = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert rules["OffloadQueuedJobTooOld"]["expr"].endswith("> 90")
    assert "offset 1h" in rules["OffloadDeadLettersRising"]["expr"]
    assert rules["OffloadNoLiveWorker"]["for"] == "3m"
    assert rules["OffloadRedisMemoryNearLimit"]["expr"].endswith("> 0.75")
    assert rules["OffloadSSEStreamsNearCap"]["expr"].endswith("> 0.5")


def test_the_dashboard_configmap_carries_the_dashboard_file_for_the_sidecar(helm: Helm):
    values = {"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                               "annotations": {"grafana_folder": "Offload"}}}}
    cm = helm.template(values).get("ConfigMap", f"{RELEASE}-offload-grafana-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Offload"}
    shipped = json.loads((CHART / "files" / "offload-dashboard.json").read_text())
    assert json.loads(cm["data"]["offload-dashboard.json"]) == shipped
    assert shipped["uid"] == "offload-overview"


def test_the_dashboard_configmap_defaults_to_the_release_namespace(helm: Helm):
    cm = helm.template(DASHBOARD_ON).get("ConfigMap", f"{RELEASE}-offload-grafana-dashboard")
    assert cm["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("bad, words", [
    ({"prometheusRule": {"redisMemoryRatio": 1.5}}, "redisMemoryRatio"),
    ({"prometheusRule": {"deadLettersWindow": "15 minutes"}}, "deadLettersWindow"),
    ({"prometheusRule": {"oldestQueuedJobSecond": 60}}, "oldestQueuedJobSecond"),
    ({"grafanaDashboard": {"namespace": "Monitoring"}}, "namespace"),
])
def test_the_schema_refuses_bad_monitoring_values(helm: Helm, bad: dict, words: str):
    assert words in helm.template_error({"metrics": bad})
