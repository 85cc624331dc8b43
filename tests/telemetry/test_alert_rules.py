"""The alerts the chart ships, checked by Prometheus' own promtool: the PrometheusRule as the
chart renders it passes `promtool check rules`, and `promtool test rules`
(alerts/offload-rules.test.yaml) shows every alert firing and not firing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chartkit import Helm, tool
from tests.telemetry.backends import promtool

RULE_TESTS = Path(__file__).parent / "alerts" / "offload-rules.test.yaml"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
ALERTS = {"OffloadQueuedJobTooOld", "OffloadDeadLettersRising", "OffloadNoLiveWorker",
          "OffloadRedisMemoryNearLimit", "OffloadSSEStreamsNearCap"}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tool("helm"), tmp_path_factory.mktemp("helm"))


def rendered_rules(helm: Helm, directory: Path, **values: Any) -> dict[str, Any]:
    """The chart's PrometheusRule spec, written where the rule tests expect it."""
    rendered = helm.template({"metrics": {"prometheusRule": {"enabled": True, **values}}},
                             api_versions=(PROMETHEUS_RULE_API,))
    [rule] = rendered.of_kind("PrometheusRule")
    (directory / "offload-rules.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(RULE_TESTS, directory / RULE_TESTS.name)
    return rule["spec"]


def test_the_shipped_rules_pass_promtool_check_rules(helm: Helm, tmp_path: Path):
    spec = rendered_rules(helm, tmp_path)
    assert {r["alert"] for g in spec["groups"] for r in g["rules"]} == ALERTS
    result = promtool("check", "rules", str(tmp_path / "offload-rules.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say(helm: Helm, tmp_path: Path):
    rendered_rules(helm, tmp_path)
    result = promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_alert_has_a_firing_and_a_quiet_case():
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert firing == ALERTS and quiet == ALERTS


def test_thresholds_come_from_the_values(helm: Helm, tmp_path: Path):
    # Ten minutes of waiting allowed instead of one: the queue test's alert must not fire, and
    # promtool says so. (Shows the rule tests really read the rendered thresholds.)
    rendered_rules(helm, tmp_path, oldestQueuedJobSeconds=1200)
    result = promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert "alertname: OffloadQueuedJobTooOld, time: 3m" in result.stdout + result.stderr
