"""Fixtures shared by every suite: a real redis-server per session, and a real platform
(gateway, status, workers) started with the services' own commands."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from offload_worker_llm.backends.llamacpp import bundled_model_path

from tests.support.browser import browser, page  # noqa: F401 - one browser per session, for every suite
from tests.support.platform import PlatformFactory
from tests.support.processes import API_ONLY_DB, SHARED_PLATFORM_DB, TEST_DB, RedisServer, free_port
from tests.support.s3server import S3Server
from tests.support.s3server import unavailable_reason as s3_unavailable_reason

MODEL_ALIAS = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (s3proxy) on a free port; skips, saying why, where it cannot run."""
    reason = s3_unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = S3Server().start()
    yield server
    server.cleanup()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the session's S3 server."""
    return s3_server.create_bucket("offload-" + secrets.token_hex(4))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's Redis, for what a test starts itself."""
    redis_server.flush(TEST_DB)
    return redis_server.db_url(TEST_DB)


@pytest.fixture(scope="session")
def shared_platform(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory):
    """Gateway, status and both workers with the default test settings, started once.

    Tests that need other settings start their own with `platform_factory`.
    """
    factory = PlatformFactory(redis_url=redis_server.db_url(SHARED_PLATFORM_DB),
                              log_dir=tmp_path_factory.mktemp("platform"))
    yield factory.start(workers=("ocr", "llm"))
    factory.stop_all()


@pytest.fixture
def platform(shared_platform, redis_server: RedisServer):
    """The shared platform over a freshly emptied database."""
    redis_server.flush(SHARED_PLATFORM_DB)
    return shared_platform


@pytest.fixture(scope="session")
def api_only_platform(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory):
    factory = PlatformFactory(redis_url=redis_server.db_url(API_ONLY_DB), log_dir=tmp_path_factory.mktemp("apis"))
    yield factory.start(workers=())
    factory.stop_all()


@pytest.fixture
def apis(api_only_platform, redis_server: RedisServer):
    """Gateway and status without workers (jobs stay queued), over a freshly emptied database."""
    redis_server.flush(API_ONLY_DB)
    return api_only_platform


@pytest.fixture
def platform_factory(tmp_path: Path, redis_url: str) -> Iterator[PlatformFactory]:
    factory = PlatformFactory(redis_url=redis_url, log_dir=tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return bundled_model_path()


@pytest.fixture(scope="session")
def llama_server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` on a free port; yields its OpenAI base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf),
             "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
             "--n_threads", "2", "--n_ctx", "2048",
             # By default a new request cuts off the stream in progress; a server in front of
             # several worker processes must queue them instead.
             "--interrupt_requests", "false"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready after 60s:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
