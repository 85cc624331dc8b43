"""Observability of an API service: one middleware for the server span, the HTTP metrics and the
access log line of every request. (/metrics is served on a port of its own: web.metrics_server.)

`install_observability(app, settings)` is the one call an app factory makes. The tracer
provider itself is made once per process by `web.serve` (offload_core.observability.telemetry).

    offload_http_requests_total{method,route,status}
    offload_http_request_duration_seconds{method,route}   (an SSE stream counts until it ends)

`route` is the route's template (`/v1/jobs/{job_id}`), or `unmatched`, so a scanner walking
random paths cannot create new series.

Why our own middleware rather than OpenTelemetry's ASGI/FastAPI instrumentation plus a metrics
middleware plus uvicorn's access log: the three did the same bookkeeping three times (find the
route, time the request, note the status), and on the submit path they cost about a fifth of
the gateway's CPU per request (BENCHMARKS.md, "Tuning"). This one does it once, and records
only what we document: no request headers, ever.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offload_core.observability import logs
from offload_core.observability.telemetry import excluded_paths
from offload_core.settings import Settings

HTTP_REQUESTS = Counter("offload_http_requests_total", "HTTP requests answered",
                        ["method", "route", "status"])
HTTP_DURATION = Histogram("offload_http_request_duration_seconds", "Time to answer an HTTP request",
                          ["method", "route"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))

# FastAPI's own OpenTelemetry support (0.165+) would add a second server span, spans around
# dependency solving and serialisation, and OTel metrics beside ours: `FastAPI(telemetry=...)`.
FASTAPI_TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}

access_log = logging.getLogger("offload.access")
tracer = trace.get_tracer("offload.http")

# Only the headers that carry trace context are ever read for tracing.
_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


def _trace_context_of(scope: Scope) -> context.Context | None:
    """The caller's trace context (W3C headers), or None when it sent none (the common case)."""
    carrier = {name.decode("latin-1"): value.decode("latin-1")
               for name, value in scope["headers"] if name in _CONTEXT_HEADERS}
    return propagate.extract(carrier) if carrier else None


class RequestObservability:
    """Server span + HTTP metrics + one access log line per request (pure ASGI, no body copies).

    Probe and scrape paths (`excluded`) are counted but get no span, and are logged only when
    they fail, so they neither bury the job traces nor fill the log.
    """

    def __init__(self, app: ASGIApp, *, excluded: frozenset[str], log_requests: bool) -> None:
        self.app, self.excluded, self.log_requests = app, excluded, log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        quiet = scope["path"] in self.excluded
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        span = token = None
        if not quiet:
            parent = _trace_context_of(scope)
            # Named after the method until routing has found the route's template (below).
            span = tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes={
                "http.request.method": method, "url.path": scope["path"], "url.scheme": scope["scheme"],
            })
            token = context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send_and_note)
        except BaseException as exc:
            if span is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            elapsed = time.perf_counter() - started
            template = getattr(scope.get("route"), "path", None)
            route = template or "unmatched"
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(elapsed)
            if self.log_requests and (not quiet or status >= 400):
                # Logged inside the span, so the line carries the request's trace and span ids
                # (and the job's id, which the submit path binds).
                access_log.info("%s %s %d %.1f ms", method, scope["path"], status, elapsed * 1000, extra={
                    "method": method, "path": scope["path"], "route": route, "status": status,
                    "duration_ms": round(elapsed * 1000, 2), "client": (scope.get("client") or ("",))[0]})
            if span is not None:
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
                context.detach(token)


def install_observability(app: FastAPI, settings: Settings) -> None:
    """Trace, measure and log `app`'s requests."""
    logs.redact_settings(settings)
    app.add_middleware(RequestObservability, excluded=excluded_paths(), log_requests=settings.access_log)
