"""Fixtures for the chart, image and skaffold tests; the helpers they use are in chartkit.py."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.chartkit import CHART, EXAMPLE_VALUES, KEDA_API, VALUE_SETS, Helm, Rendered, tool


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kind: needs a Kubernetes cluster with the chart installed (`make kind-e2e`)")


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tool("helm"), tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def renders(helm: Helm) -> dict[str, Rendered]:
    """Every value set and every example values file (k8s/values), rendered once per session."""
    out = {name: helm.template(values, api_versions=apis) for name, (values, apis) in VALUE_SETS.items()}
    for path in EXAMPLE_VALUES:
        out[f"example:{path.name}"] = helm.template(None, path, api_versions=(KEDA_API,))
    return out


@pytest.fixture(scope="session")
def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())
