"""One real platform (gateway, status, an LLM worker on llama.cpp, an OCR worker) for this
suite's tests, and clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from offload_client import AsyncOffloadClient, OffloadClient
from tests.support.platform import Platform, folder_platform
from tests.support.processes import RedisServer

SHORT = {"prompt": "Say hello.", "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="package")
def platform(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Started once for this folder (a package: see __init__.py), and stopped when its last test
    is done; the tests only ever look at their own jobs."""
    yield from folder_platform(redis_server, tmp_path_factory.mktemp("platform"))


@pytest.fixture
def client(platform: Platform) -> Iterator[OffloadClient]:
    with OffloadClient(platform.gateway.url, status_url=platform.status.url, api_key=platform.keys["alice"]) as c:
        yield c


@pytest.fixture
def async_client(platform: Platform) -> AsyncOffloadClient:
    return AsyncOffloadClient(platform.gateway.url, status_url=platform.status.url, api_key=platform.keys["alice"])
