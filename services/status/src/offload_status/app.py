"""The status application: reads job records, results and events; never writes to queues."""

from __future__ import annotations

from fastapi import FastAPI

from offload_core.settings import Settings
from offload_core.web.deps import lifespan_for
from offload_core.web.health import router as health_router
from offload_core.web.observability import FASTAPI_TELEMETRY_OFF, install_observability
from offload_core.web.problems import install_problem_handlers
from offload_core.web.routers import add_routes

from .cluster_view import cluster_view_for
from .dashboard import mount_dashboard
from .routes import router as status_router
from .scaling import router as scaling_router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Offload status",
        version="1.0.0",
        description="Follow jobs: state, progress, results, live events (SSE) and queue depth.",
        lifespan=lifespan_for(settings),
        telemetry=FASTAPI_TELEMETRY_OFF,
    )
    install_problem_handlers(app)
    install_observability(app, settings, queue_metrics_from_store=True)
    add_routes(app, health_router, status_router)
    add_routes(app, scaling_router)  # KEDA's; to move to the metrics port once there is one
    app.state.cluster_view = cluster_view_for(settings)  # GET /v1/queues shows it as `cluster`
    mount_dashboard(app, settings)
    return app
