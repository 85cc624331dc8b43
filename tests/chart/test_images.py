"""The four images, built with podman from their Dockerfile and run as the chart runs them: an OCR
job and an LLM job go through the containers (`make image-test`; slow).

No registry can be reached here, so the Dockerfile's base ARG points at a base image made from
Debian packages (`make image-base`). Each container gets what its rendered pod gives it: the
command, the environment (local_pod.py), the mounted Secrets and ConfigMaps, the user, a
read-only root with a tmpfs /tmp, no capabilities. The containers share the host network, so
Redis and the LLM server (a real llama.cpp server) run as local processes, on local ports.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.chart.chartkit import RELEASE, REPO, SERVICES, Helm
from tests.chart.local_pod import LocalContainer, PodResolver
from tests.support.processes import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

BASE_IMAGE = os.environ.get("OFFLOAD_PYTHON_BASE", "localhost/offload-pybase:bookworm")
CONTAINERS_CONF = REPO / "k8s" / "podman" / "containers.conf"
TAG = "chart-test"
LLM_KEY = "llm-server-key-for-the-image-test"


def podman(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, f"podman {' '.join(args[:3])} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _make_images_args() -> list[str]:
    """The build arguments `make images` passes (base image, OCI labels, the host's CA bundle)."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "image-build-args", f"PYTHON_BASE={BASE_IMAGE}",
                          "CONTAINER_ENGINE=podman"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return shlex.split(out)


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: `make image-test` installs it (podman-tools) and makes the base image")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.fail(f"no base image {BASE_IMAGE}: `make image-base` makes it from Debian packages")
    built = {}
    for service in SERVICES:
        image = f"localhost/offload-{service}:{TAG}"
        podman("build", "-f", "services/Dockerfile", "--build-arg", f"SERVICE={service}", "-t", image,
               *_make_images_args(), str(REPO))
        built[service] = image
    return built


@dataclass
class Container:
    name: str
    logs_of: str

    def logs(self) -> str:
        return podman("logs", self.logs_of, check=False).stdout[-4000:] + podman("logs", self.logs_of, check=False).stderr[-4000:]


class Containers:
    """Containers started from rendered pods, removed at the end."""

    def __init__(self, root: Path, redis_port: int) -> None:
        self.root, self.redis_port = root, redis_port
        self.names: list[str] = []

    def run(self, image: str, pod_spec: dict, container: LocalContainer, security: dict, *,
            detach: bool = True, env_overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        name = f"offload-test-{container.name}-{len(self.names)}"
        env = dict(container.env)
        if "OFFLOAD_REDIS_URL" in env:
            env["OFFLOAD_REDIS_URL"] = env["OFFLOAD_REDIS_URL"].replace(f"{RELEASE}-offload-redis:6379",
                                                                        f"127.0.0.1:{self.redis_port}")
        env.update(env_overrides or {})
        args = ["run", "--name", name, "--network", "host", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges",
                "--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        for mount_path, local in container.write_mounts(self.root / name).items():
            if container.mounts[mount_path]:
                args += ["-v", f"{local}:{mount_path}:ro"]
            else:  # an emptyDir
                args += ["--tmpfs", mount_path]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        args += ["-d"] if detach else []
        args += ["--entrypoint", container.argv[0], image, *container.argv[1:]]
        self.names.append(name)
        return podman(*args, timeout=600, check=detach)

    def remove_all(self) -> None:
        for name in self.names:
            podman("rm", "-f", "-t", "20", name, check=False, timeout=120)


def _security(pod: dict, container: dict) -> dict:
    return {**pod.get("securityContext", {}), **container.get("securityContext", {})}


@pytest.fixture(scope="module")
def platform(images: dict[str, str], helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("images")
    ports = {s: free_port() for s in SERVICES}
    llm_port, redis_port = free_port(), free_port()
    values = {"components": {
        "gateway": {"port": ports["gateway"], "service": {"port": ports["gateway"]}},
        "status": {"port": ports["status"], "service": {"port": ports["status"]}},
        "workerOcr": {"port": ports["worker-ocr"]},
        "workerLlm": {"port": ports["worker-llm"], "concurrency": 1,
                      "llm": {"baseUrl": f"http://127.0.0.1:{llm_port}/v1",
                              "apiKey": {"existingSecret": "llm-server", "key": "api-key"}}},
    }}
    rendered = {job: helm.template({**values, "tests": {"jobType": job}}) for job in ("ocr", "llm")}
    resolver = PodResolver(rendered["ocr"], secrets={"llm-server": {"api-key": LLM_KEY}})
    password = resolver.secrets[f"{RELEASE}-offload-redis"]["redis-password"].decode()

    from offload_worker_llm.backends.llamacpp import bundled_model_path

    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--requirepass", password,
                              "--appendonly", "yes", "--dir", str(root), "--save", ""], stdout=subprocess.DEVNULL)
    llm = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
                            "--model_alias", "smollm2-135m-instruct", "--host", "127.0.0.1", "--port", str(llm_port),
                            "--n_threads", "1", "--api_key", LLM_KEY],
                           stdout=(root / "llm.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    containers = Containers(root, redis_port)
    try:
        for service in SERVICES:
            deployment = rendered["ocr"].deployment(service)
            pod = deployment["spec"]["template"]["spec"]
            container = resolver.deployment(rendered["ocr"], f"{RELEASE}-offload-{service}")
            # The containers share the host's network: the API services' metrics ports must differ.
            metrics = {"OFFLOAD_METRICS_PORT": str(free_port())} if service in ("gateway", "status") else {}
            containers.run(images[service], pod, container, _security(pod, pod["containers"][0]),
                           env_overrides=metrics)
        for service in SERVICES:
            port = ports[service]

            def ready(name: str = containers.names[SERVICES.index(service)], port: int = port) -> bool:
                state = podman("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip()
                if state != "true":
                    raise AssertionError(f"{name} stopped:\n{Container(name, name).logs()}")
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(ready, 120, f"offload-{service} in its container", interval=0.5)
        yield rendered, resolver, containers, ports
    finally:
        containers.remove_all()
        redis.terminate()
        os.killpg(llm.pid, signal.SIGTERM)
        redis.wait(10)
        llm.wait(20)


@pytest.mark.parametrize("job_type", ["ocr", "llm"])
def test_a_job_runs_through_the_containers(platform: tuple, images: dict[str, str], job_type: str) -> None:
    rendered, resolver, containers, ports = platform
    pod = rendered[job_type].get("Pod", f"{RELEASE}-offload-test")
    test_container = resolver.pod(rendered[job_type], f"{RELEASE}-offload-test")
    urls = {"GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}", "STATUS_URL": f"http://127.0.0.1:{ports['status']}"}
    result = containers.run(images["gateway"], pod["spec"], test_container, _security(pod["spec"], pod["spec"]["containers"][0]),
                            detach=False, env_overrides=urls)
    logs = "\n---\n".join(Container(n, n).logs() for n in containers.names[:4])
    assert result.returncode == 0, f"the helm test container failed:\n{result.stdout}\n{result.stderr}\n\n{logs}"
    assert re.search(r"job \S+: succeeded", result.stdout)


def test_images_run_as_the_fixed_non_root_user_with_the_oci_labels(images: dict[str, str]) -> None:
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    version = yaml.safe_load((REPO / "charts/offload/Chart.yaml").read_text())["appVersion"]
    for service, image in images.items():
        labels = "{{index .Config.Labels \"org.opencontainers.image.%s\"}}"
        config = podman("image", "inspect", "-f", f"{{{{.Config.User}}}} {labels % 'title'} {labels % 'version'} "
                        f"{labels % 'revision'}", image).stdout.split()
        # `make images` labels what it builds with the release and the commit.
        assert config == ["10001:10001", f"offload-{service}", version, revision or "unknown"]
        # No compilers in the runtime images.
        probe = podman("run", "--rm", "--entrypoint", "python", image, "-c",
                       "import shutil; print([t for t in ('gcc', 'cc', 'g++', 'cmake', 'uv') if shutil.which(t)])")
        assert probe.stdout.strip() == "[]", f"{image}: {probe.stdout}"


@pytest.mark.skipif(os.environ.get("OFFLOAD_IMAGE_TEST_LLAMACPP") != "1",
                    reason="compiling llama.cpp into the image takes ~12 minutes on 2 cores; "
                           "`make image-test` runs it (OFFLOAD_IMAGE_TEST_LLAMACPP=1)")
def test_the_llamacpp_target_runs_the_bundled_model_in_a_locked_down_container(images: dict[str, str]) -> None:
    """The second worker-llm target: llama.cpp compiled in the builder (minutes, then cached),
    run with only libgomp added, as the chart runs it (non-root, read-only root, no capabilities)."""
    image = f"localhost/offload-worker-llm:{TAG}-llamacpp"
    podman("build", "-f", "services/Dockerfile", "--build-arg", "SERVICE=worker-llm", "--target", "runtime-llamacpp",
           "-t", image, *_make_images_args(), str(REPO), timeout=3600)
    script = ("import os, json; from llama_cpp import Llama; "
              "from offload_worker_llm.backends.llamacpp import bundled_model_path; "
              "m = Llama(model_path=str(bundled_model_path()), n_threads=1, n_ctx=256, verbose=False); "
              "r = m.create_chat_completion(messages=[{'role': 'user', 'content': 'Say hi.'}], max_tokens=8, temperature=0); "
              "print(json.dumps({'uid': os.getuid(), 'backend': os.environ['OFFLOAD_LLM_BACKEND'], "
              "'tokens': r['usage']['completion_tokens']}))")
    result = podman("run", "--rm", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                    "--security-opt", "no-new-privileges", "--entrypoint", "python", image, "-c", script)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["uid"], report["backend"]) == (10001, "llamacpp")
    assert 1 <= report["tokens"] <= 8, "the model generated nothing"

