"""Redis over TLS with a private CA (OFFLOAD_REDIS_CA_FILE, set by the chart from
externalRedis.tls.caSecret): every Redis client of ours, the APIs' (redis.asyncio), the workers'
job store (redis-py) and the Celery broker (kombu), connects to a real TLS redis-server and
verifies its certificate against that CA, and refuses it without the CA."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from offload_core.jobs.store import connect
from offload_core.jobs.worker_store import connect_sync
from offload_core.queue.celery_app import make_celery
from offload_core.settings import Settings
from offload_core.types import JobType
from tests.support.certs import Authority
from tests.support.processes import free_port, wait_for


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A redis-server speaking TLS only, its certificate from a private CA; yields (url, CA file)."""
    root = tmp_path_factory.mktemp("tls-redis")
    ca = Authority(root, "ca", "offload-test-redis-ca")
    server = ca.issue("redis", "localhost", dns=("localhost",), ips=("127.0.0.1",))
    port, password = free_port(), secrets.token_hex(12)
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", "0", "--tls-port", str(port),
                             "--bind", "127.0.0.1", "--tls-cert-file", str(server.cert), "--tls-key-file", str(server.key),
                             "--tls-ca-cert-file", str(ca.cert), "--tls-auth-clients", "no", "--requirepass", password,
                             "--save", "", "--appendonly", "no", "--dir", str(root)],
                            stdout=(root / "redis.log").open("wb"), stderr=subprocess.STDOUT)
    client = redis.Redis(host="localhost", port=port, password=password, ssl=True, ssl_ca_certs=str(ca.cert))

    def up() -> bool:
        assert proc.poll() is None, (root / "redis.log").read_text()
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    wait_for(up, 10, "the TLS redis-server")
    yield f"rediss://:{password}@localhost:{port}/0", ca.cert
    proc.terminate()
    proc.wait(10)


def _settings(url: str, ca: Path | None) -> Settings:
    return Settings(env="dev", redis_url=url, redis_ca_file=ca)


def test_every_redis_client_verifies_redis_against_the_private_ca(tls_redis: tuple[str, Path]) -> None:
    url, ca = tls_redis
    settings = _settings(url, ca)

    async def api_client() -> bool:
        client = connect(settings)
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    assert asyncio.run(api_client())
    assert connect_sync(settings).ping()
    app = make_celery(settings, JobType.OCR)
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        assert connection.default_channel.client.ping()


def test_without_the_ca_the_certificate_is_refused(tls_redis: tuple[str, Path]) -> None:
    url, _ = tls_redis
    settings = _settings(url, None)
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        connect_sync(settings).ping()

    async def api_client() -> None:
        client = connect(settings)
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        asyncio.run(api_client())
