"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright; no
browser is downloaded), against a real platform whose gateway lets the dashboard's origin in."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.support.platform import Platform, PlatformFactory
from tests.support.processes import RedisServer, Service, free_port

TRACE_TEMPLATE = "http://tracing.example:16686/trace/{trace_id}"


# An LLM worker whose server is a closed port, with one attempt per job: its jobs go dead at once.
FAILING_LLM = {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": "http://127.0.0.1:9/v1",
               "OFFLOAD_LLM_MAX_HTTP_ATTEMPTS": "1", "OFFLOAD_LLM_MAX_ATTEMPTS": "1"}


class Site:
    """A platform for the browser tests, and the one LLM worker each test wants running:
    none (jobs wait in the queue), a working one (llama.cpp), or a failing one."""

    def __init__(self, factory: PlatformFactory) -> None:
        self.factory = factory
        factory.keys["carol"] = secrets.token_urlsafe(24)  # the screenshot's tenant, on its own
        status_port, gateway_port = free_port(), free_port()
        # Each service knows the other's public URL: the page's config and the gateway's CORS need both.
        self.env = factory.env(OFFLOAD_STATUS_PUBLIC_URL=f"http://127.0.0.1:{status_port}",
                               OFFLOAD_GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{gateway_port}",
                               OFFLOAD_TRACING_UI_URL_TEMPLATE=TRACE_TEMPLATE)
        self.platform = Platform(keys=factory.keys)
        for name, port, role in (("offload-status", status_port, "status"),
                                 ("offload-gateway", gateway_port, "gateway")):
            service = Service(name, {**self.env, "OFFLOAD_PORT": str(port)}, factory.log_dir, port=port)
            factory.services.append(service)
            setattr(self.platform, role, service.start())
        self.llm_worker = "none"

    def use_llm_worker(self, kind: str) -> None:
        if kind == self.llm_worker:
            return
        if running := self.platform.workers.pop("llm", None):
            running.stop()
        if kind != "none":
            env = {**self.env, **(FAILING_LLM if kind == "failing" else {})}
            self.platform.workers["llm"] = self.factory.start_worker("llm", env)
        self.llm_worker = kind


@pytest.fixture(scope="module")
def site(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    with redis_server.client() as redis:
        redis.flushall()
    factory = PlatformFactory(redis_url=redis_server.url, log_dir=tmp_path_factory.mktemp("platform"))
    try:
        yield Site(factory)
    finally:
        factory.stop_all()
