"""Tracing set-up for every Offload process: a thin adapter over the OpenTelemetry SDK.

Configuration is only the standard `OTEL_*` variables:

    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES     who is reporting (default: the command's name)
    OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT            where to send spans (OTLP over HTTP, protobuf)
    OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL            must be http/protobuf when set
    OTEL_TRACES_EXPORTER                            otlp (default), console, none
    OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*           read by the SDK itself
    OTEL_SDK_DISABLED=true                          no tracing at all (jobs then carry no trace id)

With no endpoint nothing is exported or recorded and nothing complains, but there is still a
real tracer provider: jobs get real trace ids and logs real trace/span ids, so an operator can
turn export on later without any other change (`RecordNothing`).

Where it is called: API processes in `web.serve` (once, before uvicorn starts); prefork job
processes in `worker_process_init` (a provider made before the fork would keep an exporter
thread and HTTP connection that do not survive it), and `shutdown_tracing` on the child's
`worker_process_shutdown`, because billiard ends a recycled child with `os._exit`, which skips
the SDK's own atexit flush (the upstream failure mode that loses the last job's spans).
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind

log = logging.getLogger("offload.telemetry")

# Requests that are not news: probes and scrapes would otherwise be most of the traces.
DEFAULT_EXCLUDED_URLS = "/healthz,/readyz,/metrics"

_state: dict[str, object] = {}  # pid -> provider made in this process (see `setup_tracing`)


class NoOrphanClientSpans(Sampler):
    """Drop CLIENT spans that have no parent; defer everything else to the configured sampler.

    A Redis or HTTP call outside any request or job (kombu polling the broker in a solo
    worker, a lease heartbeat thread, a readiness ping) would otherwise make a one-span trace
    of its own, every second, burying the traces an operator looks for.
    """

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoOrphanClientSpans{{{self.inner.get_description()}}}"


class RecordNothing(Sampler):
    """For a process with no exporter: every span keeps real ids but records nothing.

    Spans that no exporter will ever send are pure cost: on the gateway's submit path,
    recording the server, publish and Redis spans took about a quarter of the CPU per request
    (BENCHMARKS.md, "Tuning"). Dropped spans still have real trace and span ids, so jobs keep
    their `trace_id`, log lines keep theirs and `traceparent` still travels with every job
    (flagged not sampled, so the next process records nothing either).
    """

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None) -> SamplingResult:
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "RecordNothing"


def _env(*names: str) -> str:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def _exporters() -> list[SpanExporter]:
    chosen = [e.strip().lower() for e in (_env("OTEL_TRACES_EXPORTER") or "otlp").split(",") if e.strip()]
    out: list[SpanExporter] = []
    if "console" in chosen:
        out.append(ConsoleSpanExporter())
    if "otlp" in chosen and _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
        if protocol != "http/protobuf":
            # Shipping gRPC would add grpcio to every image; the collector takes OTLP/HTTP on 4318.
            log.error("OTLP protocol %r is not supported, only http/protobuf (collector port 4318); "
                      "spans will not be exported", protocol)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            out.append(OTLPSpanExporter())
    return out


def setup_tracing(default_service_name: str, *, celery: bool = False) -> TracerProvider | None:
    """Make this process's tracer provider and instrument httpx (and Celery; and Redis when exporting).

    Idempotent within a process; a forked child that calls it gets its own provider. Returns
    None when OTEL_SDK_DISABLED is true.
    """
    pid = str(os.getpid())
    if pid in _state:
        return _state[pid]  # type: ignore[return-value]
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        _state[pid] = None
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    provider = TracerProvider(resource=resource)
    exporters = _exporters()
    # The SDK read OTEL_TRACES_SAMPLER into provider.sampler; tracers copy it when made, and
    # none has been made from this provider yet.
    provider.sampler = NoOrphanClientSpans(provider.sampler) if exporters else RecordNothing()
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        # Only the first provider of a process is taken; a forked child inherits the
        # parent's "already set" flag, which is why workers never set one before the fork.
        log.warning("a tracer provider was already set in process %s; using that one", pid)
    # Redis spans are only worth their cost (a span per command) when something records them;
    # httpx and Celery carry the trace context onwards either way.
    _instrument(celery=celery, redis=bool(exporters))
    _state[pid] = provider
    return provider


def preload(*, celery: bool = False) -> None:
    """Import the SDK, exporter and instrumentations without starting anything.

    A prefork worker calls this before forking: each job process then inherits the loaded
    modules instead of importing them again (about a second of CPU per process, paid again
    for every recycled child), and still makes its own provider after the fork.
    """
    import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    import opentelemetry.instrumentation.httpx  # noqa: F401
    import opentelemetry.instrumentation.redis  # noqa: F401

    if celery:
        import opentelemetry.instrumentation.celery  # noqa: F401


def _instrument(*, celery: bool, redis: bool) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (RedisInstrumentor(), HTTPXClientInstrumentor()) if redis else (HTTPXClientInstrumentor(),):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    if celery:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        if not CeleryInstrumentor().is_instrumented_by_opentelemetry:
            CeleryInstrumentor().instrument()


def shutdown_tracing() -> None:
    """Export what is still buffered, then stop. Safe to call when tracing was never set up."""
    provider = _state.pop(str(os.getpid()), None)
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def excluded_paths() -> frozenset[str]:
    """Request paths that get no server span: OTEL_PYTHON_(FASTAPI_)EXCLUDED_URLS, else probes and scrapes."""
    listed = _env("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS") or DEFAULT_EXCLUDED_URLS
    return frozenset(p.strip() for p in listed.split(",") if p.strip())
