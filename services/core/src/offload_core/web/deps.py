"""Shared resources of an API service, made once in the lifespan and handed to routes.

Routes declare what they need with the `Annotated` aliases below (`AuthenticatedCaller`, and
`StoreDep` for the unauthenticated probes), never by reaching for globals.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request

from ..settings import Settings
from ..store import JobStore, connect
from .auth import ApiKeys, Principal


@dataclass
class Services:
    settings: Settings
    store: JobStore
    api_keys: ApiKeys


def lifespan_for(settings: Settings):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.require_api_keys()
        redis = connect(settings)
        app.state.services = Services(settings, JobStore(redis, settings), ApiKeys.from_settings(settings))
        # Everything made so far lives as long as the process: move it out of the cyclic
        # collector's sight, so its pauses (the submit path's p99) scan only per-request garbage.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await redis.aclose()

    return lifespan


# One dependency per route, not one per resource: FastAPI's dependency solving costs about
# 100 µs per dependency on every request, a tenth of the submit path (BENCHMARKS.md, "Tuning").
# It is `async def` although it never waits: FastAPI runs a plain `def` dependency in a worker
# thread, and those hand-offs cost the submit path about a third of its throughput.
@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller, and the store and settings its request works with."""

    principal: Principal
    store: JobStore
    settings: Settings


async def authenticated_caller(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
) -> Caller:
    services: Services = request.app.state.services
    return Caller(services.api_keys.authenticate(authorization), services.store, services.settings)


async def get_store(request: Request) -> JobStore:
    """The store alone, for the unauthenticated probes."""
    return request.app.state.services.store


AuthenticatedCaller = Annotated[Caller, Depends(authenticated_caller)]
StoreDep = Annotated[JobStore, Depends(get_store)]
