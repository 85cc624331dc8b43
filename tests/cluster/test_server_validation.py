"""Every object the chart renders, for every value set of the chart tests and every example
values file, created on the real API server with `kubectl create --dry-run=server
--validate=strict` in a namespace that enforces Pod Security `restricted`: the server's own
schemas (unknown or misplaced fields are errors), its admission (PodSecurity, KEDA's webhook) and
its defaulting. Nothing may fail and nothing may warn."""

from __future__ import annotations

import pytest

from tests.chart.chartkit import CHART, EXAMPLE_VALUES, KEDA_API, RELEASE, SERVICE_MONITOR_API, VALUE_SETS
from tests.cluster.clusterkit import ClusterHelm

pytestmark = pytest.mark.timeout(300)

CASES = {name: (values, None) for name, (values, _) in VALUE_SETS.items()}
CASES.update({f"example:{p.name}": ({}, p) for p in EXAMPLE_VALUES})


@pytest.fixture(scope="module")
def validation_namespace(keda, restricted_namespace) -> str:
    return restricted_namespace("validated")


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rendered_object_passes_the_servers_strict_validation_and_admission(
        case: str, validation_namespace: str, helm: ClusterHelm, kubectl) -> None:
    values, values_file = CASES[case]
    # The API versions this server serves (KEDA's, not the Prometheus operator's): what the
    # chart renders for this cluster, as `helm install` would.
    args = ["template", RELEASE, str(CHART), "-n", validation_namespace, "--kube-version", "1.35.5",
            "--api-versions", KEDA_API]
    if values:
        args += ["-f", str(helm.values_file(values))]
    if values_file:
        args += ["-f", str(values_file)]
    rendered = helm.run(*args)
    assert rendered.returncode == 0, rendered.stderr
    assert SERVICE_MONITOR_API.split("/")[0] not in rendered.stdout
    result = kubectl("create", "--dry-run=server", "--validate=strict", "-n", validation_namespace, "-f", "-",
                     stdin=rendered.stdout)
    assert result.returncode == 0, f"{case}: the server refused objects:\n{result.stderr}"
    assert result.stderr.strip() == "", f"{case}: the server warned:\n{result.stderr}"
    created = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    kinds = {line.split("/")[0] for line in created}
    assert {"deployment.apps", "service", "networkpolicy.networking.k8s.io", "configmap"} <= kinds, result.stdout
