"""Shared resources of an API service, made once in the lifespan and handed to routes.

Routes declare what they need with the `Annotated` aliases below (`StoreDep`,
`CurrentPrincipal`, `SettingsDep`), never by reaching for globals.
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


# The dependencies are `async def` although they never wait: FastAPI runs a plain `def`
# dependency in a worker thread, and three thread hand-offs per request cost the submit path
# about a third of its throughput (BENCHMARKS.md, "Submit path").
async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_store(request: Request) -> JobStore:
    return request.app.state.services.store


async def get_settings(request: Request) -> Settings:
    return request.app.state.services.settings


async def current_principal(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
) -> Principal:
    return request.app.state.services.api_keys.authenticate(authorization)


StoreDep = Annotated[JobStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
