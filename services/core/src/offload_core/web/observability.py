"""Observability of an API service: server spans, HTTP metrics, /metrics, secret-free logs.

`install_observability(app, settings)` is the one call an app factory makes. The tracer
provider itself is made once per process by `web.serve` (offload_core.telemetry).

    offload_http_requests_total{method,route,status}
    offload_http_request_duration_seconds{method,route}   (an SSE stream counts until it ends)

`route` is the route's template (`/v1/jobs/{job_id}`), or `unmatched`, so a scanner walking
random paths cannot create new series.
"""

from __future__ import annotations

import time

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import logs, queue_metrics
from ..metrics import render_latest
from ..settings import Settings
from ..telemetry import instrument_fastapi

HTTP_REQUESTS = Counter("offload_http_requests_total", "HTTP requests answered",
                        ["method", "route", "status"])
HTTP_DURATION = Histogram("offload_http_request_duration_seconds", "Time to answer an HTTP request",
                          ["method", "route"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_DURATION.labels(method=method, route=route).observe(time.perf_counter() - started)


def install_observability(app: FastAPI, settings: Settings, *, queue_metrics_from_store: bool = False) -> None:
    """Trace and measure `app`, and serve GET /metrics (unauthenticated; no job data).

    `queue_metrics_from_store`: refresh the queue gauges (offload_core.queue_metrics) at each
    scrape; the status service does, so that queue depth is exported exactly once.
    """
    logs.redact_settings(settings)
    instrument_fastapi(app)
    app.add_middleware(HttpMetricsMiddleware)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if queue_metrics_from_store:
            await queue_metrics.refresh(request.app.state.services.store)
        content_type, body = await anyio.to_thread.run_sync(render_latest)
        return Response(body, media_type=content_type)
