"""Every rendered object against the real schemas: Kubernetes (kubernetes-validate, strict) for
the oldest supported and the newest release it ships, KEDA's CRDs for ScaledObject and
TriggerAuthentication, skaffold's schema for skaffold.yaml."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.chart.chartkit import REPO, Helm, Rendered, shared_path

# The oldest release the chart declares (Chart.yaml kubeVersion ">=1.30.0-0").
OLDEST_KUBERNETES = yaml.safe_load((REPO / "charts/offload/Chart.yaml").read_text())["kubeVersion"].strip(">=").split("-")[0]
KEDA_KINDS = {"ScaledObject": "keda.sh_scaledobjects.yaml", "TriggerAuthentication": "keda.sh_triggerauthentications.yaml"}
# Kinds from operators kubernetes-validate has no schema for; anything else must validate.
CRD_KINDS = {*KEDA_KINDS, "ServiceMonitor"}


def newest_kubernetes() -> str:
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = [p.name.removeprefix("v").removesuffix("-local-strict") for p in schemas.glob("v*-local-strict")]
    return max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))


def _validate_kubernetes(rendered: Rendered, version: str) -> list[str]:
    problems = []
    for doc in rendered.docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: no schema for {doc['apiVersion']} in {version}")
    return problems


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, newest_kubernetes()])
def test_every_rendered_object_is_valid_kubernetes(renders: dict[str, Rendered], version: str) -> None:
    problems = [f"{name}: {p}" for name, rendered in renders.items() for p in _validate_kubernetes(rendered, version)]
    assert not problems, "\n".join(problems)


def test_strict_validation_catches_a_misplaced_field(renders: dict[str, Rendered]) -> None:
    """The validator must be able to fail: a field in the wrong place is an error."""
    doc = copy.deepcopy(renders["defaults"].deployment("gateway"))
    doc["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"tcpSocket": {"port": 8000}}
    broken = Rendered("", [doc])
    assert _validate_kubernetes(broken, OLDEST_KUBERNETES)


def test_the_addon_manifests_are_valid_kubernetes() -> None:
    for path in sorted((REPO / "k8s" / "addons").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        for version in (OLDEST_KUBERNETES, newest_kubernetes()):
            assert not _validate_kubernetes(Rendered("", docs), version), path


def test_clusters_older_than_1_29_are_refused(helm: Helm) -> None:
    result = helm.run("template", "r", str(REPO / "charts" / "offload"), "--kube-version", "1.28.0")
    assert result.returncode != 0 and "kube" in result.stderr.lower()


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused, as the API server's pruning would drop them silently."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@lru_cache
def _keda_validator(kind: str) -> jsonschema.Validator:
    crd = yaml.safe_load(shared_path("schemas", "keda", KEDA_KINDS[kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def _keda_problems(doc: dict[str, Any]) -> list[str]:
    problems = [f"{e.message} at {list(e.absolute_path)}" for e in _keda_validator(doc["kind"]).iter_errors(doc)]
    if doc["kind"] == "ScaledObject":
        # The CRD's CEL rule, which jsonschema cannot run.
        spec = doc["spec"]
        if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
            problems.append("minReplicaCount must be less than or equal to maxReplicaCount")
    return problems


def test_scaledobjects_and_triggerauthentications_match_the_keda_crds(renders: dict[str, Rendered]) -> None:
    checked = 0
    for name, rendered in renders.items():
        for doc in rendered.docs:
            if doc["kind"] in KEDA_KINDS:
                assert doc["apiVersion"] == "keda.sh/v1alpha1"
                problems = _keda_problems(doc)
                assert not problems, f"{name}: {doc['kind']}/{doc['metadata']['name']}: {problems}"
                checked += 1
    assert checked >= 10, "expected ScaledObjects and TriggerAuthentications in the KEDA value sets"


def test_the_keda_check_catches_a_typo_and_a_min_above_max(renders: dict[str, Rendered]) -> None:
    so = copy.deepcopy(renders["keda"].of_kind("ScaledObject")[0])
    so["spec"]["advanced"]["scalingModifier"] = so["spec"]["advanced"].pop("scalingModifiers")
    assert any("scalingModifier" in p for p in _keda_problems(so))
    so = copy.deepcopy(renders["keda"].of_kind("ScaledObject")[0])
    so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"] = 4, 2
    assert "minReplicaCount must be less than or equal to maxReplicaCount" in _keda_problems(so)


def _skaffold_problems(doc: dict[str, Any]) -> list[str]:
    schema = json.loads(shared_path("schemas", "skaffold", "v4beta14.json").read_text())
    validator = jsonschema.Draft7Validator(schema)

    def deepest(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
        # skaffold's schema is anyOf-heavy: the useful message is in the deepest sub-error.
        if not error.context:
            return [error]
        depth = max(len(c.absolute_path) for c in error.context)
        return [leaf for c in error.context if len(c.absolute_path) == depth for leaf in deepest(c)]

    return [f"{e.message} at {'/'.join(map(str, e.absolute_path))}" for err in validator.iter_errors(doc)
            for e in deepest(err)]


def test_skaffold_yaml_matches_skaffolds_v4beta14_schema() -> None:
    doc = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    assert doc["apiVersion"] == "skaffold/v4beta14"
    assert _skaffold_problems(doc) == []


def test_the_skaffold_check_names_a_typo() -> None:
    doc = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    kind = next(p for p in doc["profiles"] if p["name"] == "kind")
    kind["build"]["artifacts"][0]["sync"]["manual"][0]["stripp"] = "x"
    problems = _skaffold_problems(doc)
    assert any("stripp" in p for p in problems), problems
