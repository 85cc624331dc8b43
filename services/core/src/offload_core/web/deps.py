"""Shared resources of an API service, made once in the lifespan and handed to routes.

Routes declare what they need with the `Annotated` aliases below (`AuthenticatedCaller`, and
`StoreDep` for the unauthenticated probes), never by reaching for globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPBearer

from offload_core.batches.store import BatchStore
from offload_core.files.store import FileStore
from offload_core.jobs.store import JobStore
from offload_core.maintenance.loop import Maintenance
from offload_core.payloads.s3 import S3PayloadStore
from offload_core.settings import Settings
from offload_core.web.auth import ApiKeys, Principal
from offload_core.web.metrics_server import ExtraRoute, MetricsServer
from offload_core.web.redis_pool import pooled_client

log = logging.getLogger("offload.web")


@dataclass
class Services:
    settings: Settings
    store: JobStore
    api_keys: ApiKeys
    payloads: S3PayloadStore | None = None  # inputs above the threshold go here (OFFLOAD_PAYLOAD_STORE=s3)
    files: FileStore | None = None
    batches: BatchStore | None = None


# Young objects the cyclic collector lets pile up before it looks (Python's default: 700).
COLLECTOR_GEN0_THRESHOLD = 20_000


def settle_collector() -> None:
    """Tune the cyclic garbage collector for serving, once start-up is done.

    Everything made so far lives as long as the process: `gc.freeze()` moves it out of the
    collector's sight, so its pauses (the submit path's p99) scan only per-request objects.
    And a request makes no reference cycles (0 objects collected over 8,620 submits), yet with
    the default threshold a generation-0 collection ran every ~6 submits and found nothing: ~8%
    of the submit path's CPU (BENCHMARKS.md, "Tuning"). A higher threshold keeps collecting
    what error paths leave (an exception's traceback is a cycle), just less often.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(COLLECTOR_GEN0_THRESHOLD, gen1, gen2)


def _report_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background work %s stopped", task.get_name(), exc_info=task.exception())


# Work a service runs beside its requests for as long as it serves: given the app and its
# services, a coroutine that runs until cancelled at shutdown.
BackgroundWork = Callable[[FastAPI, "Services"], Awaitable[None]]


def lifespan_for(settings: Settings, *, maintenance: bool = False, background: Sequence[BackgroundWork] = (),
                 metrics_extra: Callable[["Services"], ExtraRoute] | None = None):
    """`maintenance`: run the platform's background work (the gateway: maintenance/loop.py).
    `background`: the service's own background work (live events, gauges, the memory guard).
    `metrics_extra`: a further route of the metrics port, made from the services (web.metrics_server)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.require_api_keys()
        redis = pooled_client(settings)
        store = JobStore(redis, settings)
        payloads = S3PayloadStore.from_settings(settings) if settings.payload_store == "s3" else None
        files = FileStore(redis, settings, payloads)
        batches = BatchStore(store, files)
        services = Services(settings, store, ApiKeys.from_settings(settings), payloads, files, batches)
        app.state.services = services
        metrics = None
        if settings.metrics_port:
            metrics = await MetricsServer(os.environ.get("OFFLOAD_HOST", "0.0.0.0"), settings.metrics_port,
                                          extra=metrics_extra(services) if metrics_extra else None).start()
        work = [asyncio.create_task(run(app, services)) for run in background]
        if maintenance:
            work.append(asyncio.create_task(Maintenance(store, batches).run(), name="maintenance"))
        for task in work:
            task.add_done_callback(_report_failure)
        settle_collector()
        try:
            yield
        finally:
            for task in work:
                task.cancel()
            for task in work:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if metrics is not None:
                await metrics.stop()
            await redis.aclose()
            if payloads is not None:
                await payloads.aclose()

    return lifespan


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller, and the store and settings its request works with."""

    principal: Principal
    store: JobStore
    settings: Settings
    payloads: S3PayloadStore | None = None
    files: FileStore | None = None
    batches: BatchStore | None = None


class ApiKeyBearer(HTTPBearer):
    """The dependency every authenticated route declares: `Authorization: Bearer <API key>`.

    One dependency per route, not one per resource, and it reads the header itself rather than
    declaring it as a parameter: on every request FastAPI's solving costs about 20 µs per
    dependency and 10 µs per header parameter, on a submit path of ~600 µs of CPU (BENCHMARKS.md,
    "Tuning"). Being an `HTTPBearer` documents the scheme in the OpenAPI schema (the docs'
    Authorize button); our `__call__` replaces its checks with ours, which answer with problem
    details. It is `async` although it never waits: FastAPI runs a plain `def` dependency in a
    worker thread, and those hand-offs cost the submit path about a third of its throughput.
    """

    def __init__(self) -> None:
        super().__init__(scheme_name="apiKey", bearerFormat="API key", auto_error=False,
                         description="`Authorization: Bearer <API key>`; each key belongs to one tenant")

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        services: Services = request.app.state.services
        principal = services.api_keys.authenticate(request.headers.get("authorization"))
        return Caller(principal, services.store, services.settings, services.payloads, services.files,
                      services.batches)


async def get_store(request: Request) -> JobStore:
    """The store alone, for the unauthenticated probes."""
    return request.app.state.services.store


AuthenticatedCaller = Annotated[Caller, Depends(ApiKeyBearer())]
StoreDep = Annotated[JobStore, Depends(get_store)]
