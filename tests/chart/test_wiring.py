"""The chart's wiring matches the code: every component runs locally with exactly the command,
args and environment its rendered Deployment gives it (ConfigMaps, Secrets, `$(VAR)` expansion,
mounted files resolved by local_pod.py), the bundled Redis runs with the rendered redis.conf and
password, and the chart's own `helm test` script takes an OCR and an LLM job through them.

What changes outside a cluster, and nothing else: Redis is on a local port (its address in the
URL is rewritten), Service names resolve to 127.0.0.1, mounted files live in a temp dir, and the
image's /app/.venv is this virtualenv. Ports and the LLM server address are set through values.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.chart.chartkit import RELEASE, REPO, SERVICES, Helm, Rendered
from tests.chart.local_pod import LocalContainer, PodResolver, expand
from tests.support.processes import free_port, wait_for

VENV = Path(sys.prefix)
LLM_KEY = "llm-server-key-for-the-wiring-test"


def image_env(service: str) -> dict[str, str]:
    """The ENV lines of the service image's runtime stage, with /app/.venv meaning this venv."""
    text = (REPO / "services" / "Dockerfile").read_text().replace("${SERVICE}", service)
    runtime = text[text.index(" AS runtime-base"):text.index(" AS runtime-llamacpp")] + text[text.rindex("\nFROM "):]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.*?)(?<!\\)$", runtime, flags=re.M | re.S):
        for name, value in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[name] = value.replace("/app/.venv", str(VENV)).replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class LocalCluster:
    """Processes started from rendered pods; stops them all (process groups) at the end."""

    def __init__(self, root: Path, redis_host: str) -> None:
        self.root, self.redis_host = root, redis_host
        self.running: list[Running] = []

    def start(self, container: LocalContainer, base_env: dict[str, str], *, extra_argv: tuple[str, ...] = (),
              redis_port: int | None = None, overrides: dict[str, str] | None = None) -> Running:
        """`overrides`: what must differ from the pod's environment on one host (ports)."""
        home = self.root / container.name
        env = {"HOME": str(home), "LANG": "C.UTF-8", **base_env, **container.materialize(home), **(overrides or {})}
        if redis_port is not None and "OFFLOAD_REDIS_URL" in env:
            env["OFFLOAD_REDIS_URL"] = env["OFFLOAD_REDIS_URL"].replace(self.redis_host, f"127.0.0.1:{redis_port}")
        # Paths on the command line may point into mounts too.
        argv = [container.local_path(expand(a, env), home) for a in container.argv]
        executable = shutil.which(argv[0], path=env.get("PATH"))
        assert executable, f"{argv[0]} is not on the image's PATH"
        log = self.root / f"{container.name}.log"
        cwd = container.local_path(container.working_dir, home) if container.working_dir else home
        proc = subprocess.Popen([executable, *argv[1:], *extra_argv], env=env, cwd=cwd,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        running = Running(container.name, proc, log)
        self.running.append(running)
        return running

    def wait_ready(self, running: Running, url: str, timeout: float = 90) -> None:
        def ready() -> bool:
            if running.proc.poll() is not None:
                raise AssertionError(f"{running.name} exited with {running.proc.returncode}:\n{running.tail()}")
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(ready, timeout, f"{running.name} at {url}", interval=0.2)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{running.tail()}") from exc

    def stop(self) -> None:
        for running in reversed(self.running):
            if running.proc.poll() is None:
                os.killpg(running.proc.pid, signal.SIGTERM)
        for running in reversed(self.running):
            try:
                running.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(running.proc.pid, signal.SIGKILL)
                running.proc.wait(5)


@dataclass
class Wired:
    rendered: dict[str, Rendered]  # by helm test job type
    resolver: PodResolver
    cluster: LocalCluster
    services: dict[str, str]  # Service name -> local base URL


def _llm_server(port: int, root: Path) -> subprocess.Popen[bytes]:
    from offload_worker_llm.backends.llamacpp import bundled_model_path

    log = (root / "llm-server.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
         "--model_alias", "smollm2-135m-instruct", "--host", "127.0.0.1", "--port", str(port),
         "--n_threads", "1", "--api_key", LLM_KEY],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def wired(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wired]:
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (Debian package redis-server)")
    root = tmp_path_factory.mktemp("wiring")
    ports = {s: free_port() for s in SERVICES}
    llm_port = free_port()
    values = {
        "components": {
            # Metrics ports too: in a cluster each pod has its own 9090, here they share a host.
            "gateway": {"port": ports["gateway"], "service": {"port": ports["gateway"]}, "metricsPort": free_port()},
            "status": {"port": ports["status"], "service": {"port": ports["status"]}, "metricsPort": free_port()},
            "workerOcr": {"port": ports["worker-ocr"]},
            "workerLlm": {"port": ports["worker-llm"], "concurrency": 1,
                          "llm": {"baseUrl": f"http://127.0.0.1:{llm_port}/v1",
                                  "apiKey": {"existingSecret": "llm-server", "key": "api-key"}}},
        },
    }
    rendered = {job: helm.template({**values, "tests": {"jobType": job}}) for job in ("ocr", "llm")}
    resolver = PodResolver(rendered["ocr"], secrets={"llm-server": {"api-key": LLM_KEY}})
    cluster = LocalCluster(root, redis_host=f"{RELEASE}-offload-redis:6379")
    llm_server = _llm_server(llm_port, root)
    try:
        # The bundled Redis, from its StatefulSet and redis.conf; only where it listens changes.
        redis_port = free_port()
        sts = rendered["ocr"].get("StatefulSet", f"{RELEASE}-offload-redis")
        claims = tuple(c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"])
        redis_container = resolver.resolve(f"{RELEASE}-offload-redis-0", sts["spec"]["template"]["spec"],
                                           sts["spec"]["template"]["spec"]["containers"][0], claims)
        redis = cluster.start(redis_container, {"PATH": "/usr/bin:/bin"},
                              extra_argv=("--port", str(redis_port), "--bind", "127.0.0.1"))
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True,
                                        text=True, env={"REDISCLI_AUTH": redis_container.env["REDIS_PASSWORD"]}
                                        ).stdout.strip() == "PONG" or redis.proc.poll() is not None,
                 20, "the bundled redis to answer")
        assert redis.proc.poll() is None, redis.tail()

        wait_for(lambda: httpx.get(f"http://127.0.0.1:{llm_port}/v1/models",
                                   headers={"Authorization": f"Bearer {LLM_KEY}"}, timeout=2).status_code == 200
                 if _port_open(llm_port) else False, 60, "the llama.cpp server")

        for service in SERVICES:
            container = resolver.deployment(rendered["ocr"], f"{RELEASE}-offload-{service}")
            # Each pod has a network of its own; here the API services' metrics ports must differ.
            metrics = {"OFFLOAD_METRICS_PORT": str(free_port())} if service in ("gateway", "status") else {}
            running = cluster.start(container, image_env(service), redis_port=redis_port, overrides=metrics)
            cluster.wait_ready(running, f"http://127.0.0.1:{container.readiness_port}{container.readiness_path}")
        yield Wired(rendered, resolver, cluster,
                    {f"{RELEASE}-offload-gateway": f"127.0.0.1:{ports['gateway']}",
                     f"{RELEASE}-offload-status": f"127.0.0.1:{ports['status']}"})
    finally:
        cluster.stop()
        os.killpg(llm_server.pid, signal.SIGTERM)
        llm_server.wait(20)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("job_type", ["ocr", "llm"])
def test_helm_test_takes_a_job_through_the_services_as_the_chart_wires_them(wired: Wired, job_type: str) -> None:
    test_pod = wired.resolver.pod(wired.rendered[job_type], f"{RELEASE}-offload-test")
    assert test_pod.env["JOB_TYPE"] == job_type
    for name in ("GATEWAY_URL", "STATUS_URL"):  # Service DNS names resolve to the local processes
        for service, local in wired.services.items():
            test_pod.env[name] = re.sub(rf"//{re.escape(service)}:\d+", f"//{local}", test_pod.env[name])
    running = wired.cluster.start(test_pod, image_env("gateway"))
    try:
        code = running.proc.wait(240)
    except subprocess.TimeoutExpired:
        os.killpg(running.proc.pid, signal.SIGKILL)
        raise
    logs = {r.name: r.tail(20) for r in wired.cluster.running}
    assert code == 0, f"helm test failed:\n{running.tail()}\n\nservice logs:\n" + "\n---\n".join(
        f"{k}:\n{v}" for k, v in logs.items())
    assert re.search(r"job \S+: succeeded", running.log.read_text())
