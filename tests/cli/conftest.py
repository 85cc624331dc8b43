"""The `offload` command, run as users run it (the installed console script, in a subprocess)
against one real platform (both workers) for the suite."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.support.platform import Platform, folder_platform
from tests.support.processes import VENV_BIN, RedisServer

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="package")
def platform(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Started once for this folder (a package: see __init__.py), and stopped when its last test
    is done; the tests only ever look at their own jobs."""
    yield from folder_platform(redis_server, tmp_path_factory.mktemp("platform"))


@pytest.fixture
def offload(platform: Platform) -> Cli:
    """Runs `offload ARGS...` configured through the environment, as alice unless told."""

    def run(*args: str, tenant: str = "alice", env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
        full_env.update({"OFFLOAD_URL": platform.gateway.url, "OFFLOAD_STATUS_URL": platform.status.url,
                         "OFFLOAD_API_KEY": platform.keys.get(tenant, tenant), "COLUMNS": "120"})
        full_env.update(env or {})
        return subprocess.run([str(VENV_BIN / "offload"), *args], env=full_env, input=input, capture_output=True,
                              text=True, timeout=timeout)

    return run
