"""The status application: reads job records, results and events; never writes to queues."""

from __future__ import annotations

from fastapi import FastAPI

from offload_core.settings import Settings
from offload_core.web.deps import lifespan_for
from offload_core.web.health import router as health_router
from offload_core.web.problems import install_problem_handlers

from .routes import router as status_router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Offload status",
        version="1.0.0",
        description="Follow jobs: state, progress, results, live events (SSE) and queue depth.",
        lifespan=lifespan_for(settings),
    )
    install_problem_handlers(app)
    app.include_router(health_router)
    app.include_router(status_router)
    return app
