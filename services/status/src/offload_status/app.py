"""The status application: reads job records, results and events; never writes to queues."""

from __future__ import annotations

from fastapi import FastAPI

from offload_core.settings import Settings
from offload_core.web import queue_metrics
from offload_core.web.deps import lifespan_for
from offload_core.web.health import router as health_router
from offload_core.web.limits import RequestLimits
from offload_core.web.observability import FASTAPI_TELEMETRY_OFF, install_observability
from offload_core.web.problems import install_problem_handlers
from offload_core.web.routers import add_routes

from .cluster_view import cluster_view_for
from .dashboard import mount_dashboard
from .event_hub import LiveEventHub
from .pipelines import router as pipelines_router
from .routes import router as status_router
from .stream_slots import StreamSlots


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    hub = LiveEventHub(settings)  # every live event stream of this process, from one Redis connection
    app = FastAPI(
        title="Offload status",
        version="1.0.0",
        description="Follow jobs: state, progress, results, live events (SSE) and queue depth.",
        lifespan=lifespan_for(settings, background=[
            lambda app, services: hub.run(services.store.redis),
            # Queue and Redis memory gauges, refreshed here so that a scrape costs Redis nothing.
            lambda app, services: queue_metrics.refresh_forever(services.store, settings.metrics_refresh_seconds),
        ]),
        telemetry=FASTAPI_TELEMETRY_OFF,
    )
    app.state.event_hub = hub
    app.state.stream_slots = StreamSlots(max_streams=settings.sse_max_streams,
                                         max_per_tenant=settings.sse_max_streams_per_tenant)
    install_problem_handlers(app)
    app.add_middleware(RequestLimits, max_connections=settings.http_max_connections)
    install_observability(app, settings)
    add_routes(app, health_router, status_router, pipelines_router)
    app.state.cluster_view = cluster_view_for(settings)  # GET /v1/queues shows it as `cluster`
    mount_dashboard(app, settings)
    return app
