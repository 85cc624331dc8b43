"""Fixtures shared by every suite: a real redis-server per session, and a real platform
(gateway, status, workers) started with the services' own commands."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.platform import Platform, PlatformFactory
from tests.support.processes import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's Redis."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()  # a test killed it
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def platform_factory(tmp_path: Path, redis_url: str) -> Iterator[PlatformFactory]:
    factory = PlatformFactory(redis_url=redis_url, log_dir=tmp_path)
    yield factory
    factory.stop_all()
