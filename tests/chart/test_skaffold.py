"""skaffold.yaml agrees with the repository: one artifact per service, built from the one
Dockerfile, image values the chart accepts, port-forwards to Services the chart makes, sync
targets that exist."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.chart.chartkit import CHART, REPO, SERVICES, Helm

SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())
PROFILES = {p["name"]: p for p in SKAFFOLD["profiles"]}


def _configs() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, build, deploy) for the default pipeline and each profile that restates them."""
    out = [("default", SKAFFOLD["build"], SKAFFOLD["deploy"])]
    for name, profile in PROFILES.items():
        out.append((name, profile.get("build", SKAFFOLD["build"]), profile.get("deploy", SKAFFOLD["deploy"])))
    return out


@pytest.mark.parametrize(("name", "build", "deploy"), _configs(), ids=[c[0] for c in _configs()])
def test_one_artifact_per_service_built_from_its_own_dockerfile(name: str, build: dict, deploy: dict) -> None:
    artifacts = {a["image"]: a for a in build["artifacts"]}
    assert sorted(artifacts) == sorted(f"offload-{s}" for s in SERVICES)
    for service in SERVICES:
        artifact = artifacts[f"offload-{service}"]
        assert artifact["context"] == "."
        dockerfile = REPO / artifact["docker"]["dockerfile"]
        assert dockerfile == REPO / "services" / "Dockerfile" and dockerfile.exists()
        assert artifact["docker"]["buildArgs"]["SERVICE"] == service
        target = artifact["docker"].get("target")
        if target:
            assert re.search(rf"^FROM .* AS {re.escape(target)}$", dockerfile.read_text(), flags=re.M), target
        for arg in artifact["docker"].get("buildArgs", {}):
            assert re.search(rf"^ARG {arg}\b", dockerfile.read_text(), flags=re.M), f"{dockerfile} has no ARG {arg}"


@pytest.mark.parametrize(("name", "build", "deploy"), _configs(), ids=[c[0] for c in _configs()])
def test_the_built_images_reach_the_chart(name: str, build: dict, deploy: dict, helm: Helm) -> None:
    (release,) = deploy["helm"]["releases"]
    assert (REPO / release["chartPath"]).resolve() == CHART
    templates = release["setValueTemplates"]
    for artifact in build["artifacts"]:
        var = artifact["image"].replace("-", "_")
        assert f"{{{{.IMAGE_REPO_{var}}}}}" in templates.values(), artifact["image"]
        assert f"{{{{.IMAGE_TAG_{var}}}}}" in templates.values(), artifact["image"]
    # The keys must be values the chart's strict schema accepts, and land in the Deployments.
    files = [REPO / f for f in release.get("valuesFiles", [])]
    sets: list[str] = []
    for key, template in templates.items():
        sets += ["--set", f"{key}={re.sub(r'[{}.]', '', template).lower()}"]
    args = ["template", release["name"], str(CHART), "-n", release["namespace"], *sets]
    for f in files:
        args += ["-f", str(f)]
    result = helm.run(*args)
    assert result.returncode == 0, result.stderr
    images = {c["image"] for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {f"image_repo_offload_{s.replace('-', '_')}:image_tag_offload_{s.replace('-', '_')}"
                      for s in SERVICES}


def test_port_forwards_point_at_the_gateway_and_status_services(helm: Helm) -> None:
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    result = helm.run("template", release["name"], str(CHART), "-n", release["namespace"])
    services = {d["metadata"]["name"]: d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Service"}
    forwards = {(f["resourceName"], f["port"], f["localPort"]) for f in SKAFFOLD["portForward"]}
    assert forwards == {("offload-gateway", 8000, 8000), ("offload-status", 8001, 8001)}
    for name, port, _ in forwards:
        assert port in [p["port"] for p in services[name]["spec"]["ports"]]


def test_kind_profile_syncs_python_sources_into_the_installed_packages() -> None:
    kind = PROFILES["kind"]
    assert kind["activation"] == [{"kubeContext": "kind-offload"}]
    dockerfile_base = re.search(r"^ARG PYTHON_BASE=python:(\d+\.\d+)", (REPO / "services/Dockerfile").read_text(),
                                flags=re.M)
    site_packages = f"/app/.venv/lib/python{dockerfile_base.group(1)}/site-packages"
    synced = {a["image"]: a["sync"]["manual"] for a in kind["build"]["artifacts"] if "sync" in a}
    assert sorted(synced) == ["offload-gateway", "offload-status"]
    for rules in synced.values():
        for rule in rules:
            assert rule["dest"] == site_packages
            package_dir = REPO / rule["strip"]
            assert package_dir.is_dir() and any(package_dir.glob("offload_*/__init__.py")), rule
    kind_values = yaml.safe_load((REPO / "k8s/values/kind.yaml").read_text())
    for key in ("gateway", "status"):
        command = kind_values["components"][key]["command"]
        assert command[0] == "watchfiles" and f"offload-{key}" in command
        assert any(p.startswith(site_packages) for p in command), "watchfiles must watch where sync writes"
        assert kind_values["components"][key]["securityContext"]["readOnlyRootFilesystem"] is False
