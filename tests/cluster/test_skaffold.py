"""skaffold v2, built from its Go module, with the repository's skaffold.yaml: `diagnose` and
`render` read the config and render the chart with the real helm; `skaffold run` builds the
four images through podman's Docker-compatible API (`podman system service`, DOCKER_HOST; the
`podman` profile: no BuildKit there) and deploys them to the control plane; one `skaffold dev`
iteration sees a changed source file, rebuilds that image and rolls its Deployment.

No registry answers here, so the images build FROM the local base `make image-base` makes
(OFFLOAD_PYTHON_BASE). These run before KEDA is installed: the default values' ScaledObjects
would point KEDA, running outside the cluster, at a Redis Service name it cannot resolve.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.chart.chartkit import K8S_TOOLS, REPO, SERVICES
from tests.cluster.clusterkit import record, wait_until
from tests.cluster.control_plane import ControlPlane, go_tool

pytestmark = pytest.mark.timeout(900)

BASE_IMAGE = os.environ.get("OFFLOAD_PYTHON_BASE", "localhost/offload-pybase:bookworm")
CONTAINERS_CONF = REPO / "k8s" / "podman" / "containers.conf"
NAMESPACE = "offload"  # skaffold.yaml's release namespace
TAG = re.compile(r"^offload-[a-z-]+:[0-9a-f]{64}$")


def skaffold(*args: str, env: dict[str, str], cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(go_tool("skaffold")), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def offline_env() -> dict[str, str]:
    """skaffold with the cached helm on PATH, no update check, no container engine."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env.update(PATH=f"{K8S_TOOLS / 'bin'}:{env['PATH']}", SKAFFOLD_UPDATE_CHECK="false", SKAFFOLD_INTERACTIVE="false")
    return env


@pytest.fixture(scope="module")
def podman_api(offline_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`podman system service` on a socket of our own; yields skaffold's environment for it."""
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: `make test-cluster` installs it (image-base, mk/kubernetes.mk)")
    env = {**offline_env, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env).returncode != 0:
        pytest.fail(f"no base image {BASE_IMAGE}: `make image-base` makes it from Debian packages")
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until("podman's API socket", socket.exists, timeout=20, interval=0.1)
    yield {**env, "DOCKER_HOST": f"unix://{socket}", "OFFLOAD_PYTHON_BASE": BASE_IMAGE}
    os.killpg(service.pid, signal.SIGTERM)
    service.wait(20)


@pytest.mark.parametrize("profile", [None, "podman", "kind"])
def test_diagnose_reads_the_config_and_every_profile(offline_env: dict[str, str], profile: str | None) -> None:
    result = skaffold("diagnose", "--yaml-only", *(["-p", profile] if profile else []), env=offline_env)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["apiVersion"] == "skaffold/v4beta14"
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert sorted(artifacts) == sorted(f"offload-{s}" for s in SERVICES)
    for service in SERVICES:
        docker = artifacts[f"offload-{service}"]["docker"]
        assert docker["dockerfile"] == "services/Dockerfile" and docker["buildArgs"]["SERVICE"] == service
        # Without OFFLOAD_PYTHON_BASE, the Dockerfile's own default base (skaffold expands it at build).
        default = re.search(r"^ARG PYTHON_BASE=(\S+)$", (REPO / "services/Dockerfile").read_text(), flags=re.M).group(1)
        assert docker["buildArgs"]["PYTHON_BASE"] == f'{{{{default "{default}" .OFFLOAD_PYTHON_BASE}}}}'

    assert config["build"]["local"]["useBuildkit"] is (profile != "podman")


def test_full_diagnose_and_render_compute_content_tags_through_podman(podman_api: dict[str, str]) -> None:
    diagnose = skaffold("diagnose", "-p", "podman", env=podman_api)
    assert diagnose.returncode == 0, diagnose.stderr
    assert diagnose.stdout.count("Docker artifact: offload-") == 4 and "Dependencies:" in diagnose.stdout
    render = skaffold("render", "-p", "podman", "--digest-source=tag", env=podman_api)
    assert render.returncode == 0, render.stderr
    docs = [d for d in yaml.safe_load_all(render.stdout) if d]
    images = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
              for d in docs if d["kind"] == "Deployment"}
    assert sorted(images) == sorted(f"offload-{s}" for s in SERVICES)
    for name, image in images.items():
        assert TAG.match(image) and image.startswith(f"{name}:"), image


def _deployed_images(api: client.ApiClient) -> dict[str, str]:
    deployments = client.AppsV1Api(api).list_namespaced_deployment(NAMESPACE).items
    return {d.metadata.name: d.spec.template.spec.containers[0].image for d in deployments}


def test_skaffold_run_builds_through_podman_and_deploys_to_the_control_plane(
        cluster_without_keda: ControlPlane, storage: str, api: client.ApiClient, podman_api: dict[str, str]) -> None:
    started = time.monotonic()
    run = skaffold("run", "-p", "podman", "--kubeconfig", str(cluster_without_keda.admin_kubeconfig),
                   "--port-forward=off", "--status-check=true", env=podman_api, timeout=900)
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    record("skaffold run -p podman (4 image builds through podman's API, helm install, status check)",
           time.monotonic() - started)
    images = _deployed_images(api)
    assert sorted(images) == sorted(f"offload-{s}" for s in SERVICES)
    built = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"], env=podman_api,
                           capture_output=True, text=True).stdout.split()
    for image in images.values():
        assert TAG.match(image) and f"docker.io/library/{image}" in built, image


def _source_copy(destination: Path) -> Path:
    """The working tree's files (tracked and new), without .git or the venv."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def test_one_skaffold_dev_iteration_rebuilds_and_rolls_a_changed_service(
        cluster_without_keda: ControlPlane, storage: str, api: client.ApiClient, podman_api: dict[str, str],
        tmp_path: Path) -> None:
    workspace = _source_copy(tmp_path / "offload")
    log = tmp_path / "skaffold-dev.log"
    dev = subprocess.Popen([str(go_tool("skaffold")), "dev", "-p", "podman", "--kubeconfig",
                            str(cluster_without_keda.admin_kubeconfig), "--port-forward=off", "--cleanup=true"],
                           cwd=workspace, env=podman_api, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        started = time.monotonic()
        def deployed() -> bool:
            assert dev.poll() is None, f"skaffold dev exited:\n{log.read_text(errors='replace')[-3000:]}"
            return "Watching for changes" in log.read_text(errors="replace")

        wait_until("skaffold dev's first deploy", deployed, timeout=600, interval=1)
        record("skaffold dev: first build and deploy", time.monotonic() - started)
        before = _deployed_images(api)

        source = workspace / "services" / "gateway" / "src" / "offload_gateway" / "app.py"
        # A change no earlier run made, so it is really built (skaffold caches by content).
        source.write_text(source.read_text() + f"\n# changed by the skaffold dev test {uuid.uuid4()}\n")
        changed = time.monotonic()

        def rolled() -> bool:
            assert dev.poll() is None, log.read_text(errors="replace")[-3000:]
            now = _deployed_images(api)
            return now["offload-gateway"] != before["offload-gateway"] and all(
                now[n] == before[n] for n in before if n != "offload-gateway")

        wait_until("the gateway rebuilt and rolled, and nothing else", rolled, timeout=600, interval=1)
        record("skaffold dev: a changed gateway file to its new image deployed", time.monotonic() - changed)
        iteration = log.read_text(errors="replace").rpartition("Generating tags")[2]
        assert "Building [offload-gateway]" in iteration and "Building [offload-status]" not in iteration, iteration
        wait_until("the rollout to finish", lambda: "Deployments stabilized" in log.read_text(errors="replace")
                   .rpartition("Generating tags")[2], timeout=120, interval=1)
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl+C: skaffold dev cleans up (helm uninstall)
        try:
            dev.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(10)
    wait_until("skaffold dev's cleanup", lambda: not _deployed_images(api), timeout=60)
    # The image this iteration built is unique to it: do not let runs pile them up.
    built = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                            f"since=docker.io/library/{before['offload-gateway']}"], env=podman_api,
                           capture_output=True, text=True).stdout.split()
    for image in built:
        if image.startswith("docker.io/library/offload-gateway:"):
            subprocess.run(["podman", "rmi", image], env=podman_api, capture_output=True)
