"""The OpenTelemetry Collector configurations shipped in k8s/ pass the real Collector's
`validate` (otelcol-offload, built with the Collector Builder from the components they use:
mk/observability.mk). test_jaeger.py and test_tail_sampling.py then run them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.telemetry.backends import collector_configs, go_tool

CONFIGS = collector_configs()


def validate(config_text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    path = directory / "config.yaml"
    path.write_text(config_text)
    return subprocess.run([str(go_tool("otelcol-offload")), "validate", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_the_dev_and_the_tail_sampling_configurations_are_found():
    assert set(CONFIGS) == {"k8s/addons/observability.yaml:otel-collector",
                            "k8s/addons/otel-collector-tail-sampling.yaml:otel-collector"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_otelcol_validate_passes(name: str, tmp_path: Path):
    result = validate(CONFIGS[name], tmp_path)
    assert result.returncode == 0, f"otelcol validate on {name}:\n{result.stdout}{result.stderr}"


def test_validate_refuses_a_misspelt_setting(tmp_path: Path):
    # The check can fail: a typo in a processor's settings is refused, naming the key.
    broken = CONFIGS["k8s/addons/otel-collector-tail-sampling.yaml:otel-collector"].replace(
        "decision_wait:", "decision_wiat:")
    result = validate(broken, tmp_path)
    assert result.returncode != 0
    assert "decision_wiat" in result.stderr
