"""Fixtures for the telemetry suites: a real OTLP/HTTP receiver, and a test client that takes
part in traces the way an instrumented caller would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.telemetry.otlp_receiver import OtlpReceiver

CLIENT_SERVICE = "offload-test-client"


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    """What every service gets: export to the receiver, quickly (the batch delay is 5 s by default)."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}


class TracedClient:
    """An API client with its own spans, exported over OTLP/HTTP like any instrumented caller."""

    def __init__(self, endpoint: str) -> None:
        """`endpoint`: an OTLP/HTTP base URL (our receiver's, or a real Collector's)."""
        self.provider = TracerProvider(resource=Resource.create({"service.name": CLIENT_SERVICE}),
                                       shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
        self.tracer = self.provider.get_tracer("tests.telemetry")

    @contextmanager
    def span(self, name: str) -> Iterator[str]:
        """Run the block inside a client span; yields its trace id."""
        with self.tracer.start_as_current_span(name) as span:
            yield format(span.get_span_context().trace_id, "032x")

    @staticmethod
    def traceparent() -> dict[str, str]:
        """The W3C headers of the current client span (empty outside one)."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def traced_client(otlp_receiver: OtlpReceiver) -> Iterator[TracedClient]:
    client = TracedClient(otlp_receiver.endpoint)
    yield client
    client.close()
