"""values.yaml, values.schema.json and the chart's own checks: wrong values are refused with a
message that says what to fix, and every value is documented."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.chart.chartkit import CHART, EXAMPLE_VALUES, Helm


def test_helm_lint_strict_passes_for_the_defaults_and_every_example(helm: Helm) -> None:
    for files in [[], *[["-f", str(p)] for p in EXAMPLE_VALUES]]:
        result = helm.run("lint", "--strict", str(CHART), *files)
        assert result.returncode == 0, f"helm lint --strict {files}:\n{result.stdout}\n{result.stderr}"
        assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"components": {"gatewy": {"enabled": True}}}, "at '/components': additional properties 'gatewy' not allowed"),
        ({"default": {"image": {"tagg": "1"}}}, "at '/default/image': additional properties 'tagg' not allowed"),
        ({"components": {"workerOcr": {"llm": {"backend": "openai"}}}},
         "at '/components/workerOcr': additional properties 'llm' not allowed"),
        ({"components": {"workerOcr": {"autoscaling": {"minReplicaCount": -1}}}},
         "at '/components/workerOcr/autoscaling/minReplicaCount': minimum: got -1, want 0"),
        ({"components": {"workerLlm": {"replicas": "two"}}}, "at '/components/workerLlm/replicas': got string, want integer"),
        ({"components": {"workerLlm": {"llm": {"backend": "vllm"}}}}, "at '/components/workerLlm/llm/backend'"),
        ({"config": {"ocr": {"dpi": 1200}}}, "at '/config/ocr/dpi': maximum: got 1,200, want 600"),
        ({"externalRedis": {"host": "redis://host:6379"}}, "at '/externalRedis/host'"),
        # A digest names one image: there is no default one to share between four images.
        ({"default": {"image": {"digest": "sha256:" + "a" * 64}}},
         "at '/default/image': additional properties 'digest' not allowed"),
        ({"components": {"status": {"image": {"digest": "latest"}}}}, "at '/components/status/image/digest'"),
        ({"redis": {"maxmemory": "1 GiB"}}, "at '/redis/maxmemory'"),
        ({"tests": {"jobType": "pdf"}}, "at '/tests/jobType'"),
    ],
)
def test_bad_values_are_refused_with_the_schemas_message(helm: Helm, values: dict[str, Any], message: str) -> None:
    error = helm.template_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


def test_inconsistent_values_are_refused_all_at_once_with_what_to_fix(helm: Helm) -> None:
    error = helm.template_error({
        "config": {"visibilityTimeoutSeconds": 100, "llm": {"softTimeLimitSeconds": 700}},
        "components": {"workerOcr": {"terminationGracePeriodSeconds": 60,
                                     "autoscaling": {"minReplicaCount": 5, "maxReplicaCount": 2}},
                       "gateway": {"enabled": False}},
        "redis": {"enabled": False},
        "ingress": {"enabled": True},
    })
    expected = [
        "config.visibilityTimeoutSeconds (100) must exceed config.ocr.hardTimeLimitSeconds (360), or long jobs run twice",
        "config.llm.softTimeLimitSeconds (700) must be below config.llm.hardTimeLimitSeconds (540)",
        "components.workerOcr.terminationGracePeriodSeconds (60) must be at least config.ocr.hardTimeLimitSeconds (360)",
        "components.workerOcr.autoscaling.minReplicaCount (5) must not exceed maxReplicaCount (2)",
        "redis.enabled=false needs externalRedis.host",
        "ingress.enabled needs ingress.gatewayHost",
        "tests.enabled with tests.jobType=ocr needs components.gateway.enabled",
    ]
    missing = [m for m in expected if m not in error]
    assert not missing, f"missing {missing} in:\n{error}"


def _install_notes(helm: Helm, values: dict[str, Any], *files) -> str:
    """What `helm install` prints after installing these values (client-side dry run)."""
    args = ["install", "demo", str(CHART), "--dry-run=client", "--namespace", "offload"]
    for f in (*files, helm.values_file(values)):
        args += ["-f", str(f)]
    result = helm.run(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.partition("NOTES:")[2]


@pytest.mark.parametrize(("values", "threads"), [
    ({"llm": {"backend": "llamacpp"}}, 8),  # the defaults: 4 job processes x 2 threads under 1 CPU
    ({"llm": {"backend": "llamacpp", "threads": 3}, "pool": "threads"}, 3),  # one model per pod
    ({"llm": {"backend": "llamacpp", "threads": 1}, "concurrency": 1, "resources": {"limits": {"cpu": "500m"}}}, 1),
])
def test_llamacpp_threads_above_the_cpu_limit_get_a_warning(helm: Helm, values: dict[str, Any], threads: int) -> None:
    notes = _install_notes(helm, {"components": {"workerLlm": values}})
    assert f"WARNING: worker-llm runs llama.cpp in process with up to {threads} decoding thread(s) per pod" in notes, notes


@pytest.mark.parametrize("values", [
    {},  # the openai backend decodes elsewhere
    {"llm": {"backend": "llamacpp", "threads": 1}, "concurrency": 2, "resources": {"limits": {"cpu": "2"}}},
    {"llm": {"backend": "llamacpp", "threads": 4}, "pool": "threads", "resources": {"limits": {"cpu": "4000m"}}},
    {"llm": {"backend": "llamacpp"}, "resources": {"limits": {"cpu": None}}},  # no CPU limit (null removes it): no throttling
])
def test_llamacpp_threads_within_the_cpu_limit_get_none(helm: Helm, values: dict[str, Any]) -> None:
    notes = _install_notes(helm, {"components": {"workerLlm": values}})
    assert "NOTES" not in notes and "4. Workers:" in notes and "llama.cpp in process" not in notes


def test_install_notes_warn_when_secrets_were_generated_and_name_the_gitops_way(helm: Helm) -> None:
    notes = _install_notes(helm, {})
    assert ("NOTE: the chart generated these Secrets: demo-offload-api-keys (API keys), demo-offload-webhook-secrets "
            "(webhook signing), demo-offload-redis (Redis password)") in notes, notes
    assert "auth.existingSecret, auth.webhookSecrets.existingSecret and redis.auth.existingSecret" in notes
    brought = _install_notes(helm, {"auth": {"existingSecret": "k", "webhookSecrets": {"existingSecret": "w"}},
                                    "redis": {"auth": {"existingSecret": "r"}}})
    assert "generated these Secrets" not in brought


def test_install_notes_say_when_service_monitors_were_asked_for_but_cannot_be_made(helm: Helm) -> None:
    notes = _install_notes(helm, {"metrics": {"serviceMonitor": {"enabled": True}}})
    assert "WARNING: metrics.serviceMonitor.enabled=true but this cluster does not serve monitoring.coreos.com/v1" in notes


def test_install_notes_say_a_volume_claim_needs_a_storage_class(helm: Helm) -> None:
    notes = _install_notes(helm, {})
    assert "Without a default StorageClass the claim stays Pending and Redis never starts" in notes
    assert "StorageClass" not in _install_notes(helm, {"redis": {"persistence": {"enabled": False}}})


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    """Paths of values.yaml's values; an empty map or a list counts as one value."""
    if isinstance(node, dict) and node:
        out: list[str] = []
        for key, value in node.items():
            out += _leaf_paths(value, f"{prefix}.{key}" if prefix else key)
        return out
    return [prefix]


def test_every_value_has_a_param_line_and_every_param_names_a_value(chart_values: dict[str, Any]) -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param (\S+) \S", text, flags=re.M))
    leaves = _leaf_paths(chart_values)

    def covered(path: str) -> bool:  # a documented map covers what is inside it (securityContext, resources)
        parts = path.split(".")
        return any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1))

    undocumented = [p for p in leaves if not covered(p)]
    assert not undocumented, f"values without a `## @param` line: {undocumented}"

    def exists(path: str) -> bool:
        node: Any = chart_values
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    stale = sorted(p for p in documented if not exists(p))
    assert not stale, f"`## @param` lines for values that do not exist: {stale}"


def test_the_schema_refuses_unknown_keys_everywhere_but_kubernetes_passthrough_objects() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    loose: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
                loose.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(schema, "#")
    assert not loose, f"schema objects that accept unknown keys: {loose}"
    assert schema["additionalProperties"] is False


def test_the_readme_lists_every_parameter_as_values_yaml_documents_it() -> None:
    from tests.chart.readme_table import current_readme

    assert (CHART / "README.md").read_text() == current_readme(), "run `make chart-readme`"
