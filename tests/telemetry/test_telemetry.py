"""offload_core.observability.telemetry in a real process: configuration by OTEL_* variables only, export over
OTLP/HTTP to a real receiver, nothing exported (and nothing complaining) without an endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.telemetry.otlp_receiver import OtlpReceiver

# One request span with a client call under it, and a client call outside any request.
PROBE = """
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from offload_core.observability.telemetry import setup_tracing, shutdown_tracing

setup_tracing("offload-probe")
tracer = trace.get_tracer("probe")
with tracer.start_as_current_span("orphan call", kind=SpanKind.CLIENT):
    pass
with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as span:
    with tracer.start_as_current_span("call", kind=SpanKind.CLIENT):
        pass
    print(format(span.get_span_context().trace_id, "032x"))
    carrier = {}
    propagate.inject(carrier)
print(getattr(span, "end_time", None) is not None, carrier.get("traceparent", ""))
shutdown_tracing()
"""


def run_probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60, check=True)


@pytest.fixture(scope="module")
def exported() -> Iterator[tuple[OtlpReceiver, str]]:
    """One probe run exporting to a receiver: (receiver, the request span's trace id)."""
    receiver = OtlpReceiver().start()
    out = run_probe({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    yield receiver, out.stdout.splitlines()[0]
    receiver.stop()


def test_spans_reach_an_otlp_http_endpoint_under_the_default_service_name(exported):
    receiver, trace_id = exported
    spans = receiver.trace(trace_id)
    assert {s.name for s in spans} == {"request", "call"}
    assert {s.service for s in spans} == {"offload-probe"}
    request = next(s for s in spans if s.name == "request")
    assert next(s for s in spans if s.name == "call").parent_span_id == request.span_id


def test_a_client_call_outside_any_request_makes_no_trace(exported):
    receiver, _ = exported
    assert "orphan call" not in {s.name for s in receiver.spans}


def test_otel_service_name_and_sampler_come_from_the_environment(otlp_receiver: OtlpReceiver):
    run_probe({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, "OTEL_SERVICE_NAME": "renamed"})
    run_probe({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, "OTEL_SERVICE_NAME": "sampled-out",
               "OTEL_TRACES_SAMPLER": "always_off"})
    services = {s.service for s in otlp_receiver.spans}
    assert services == {"renamed"}


def test_without_an_endpoint_spans_have_real_ids_and_nothing_is_sent_or_reported(otlp_receiver: OtlpReceiver):
    out = run_probe({})
    trace_id, recorded = out.stdout.splitlines()
    assert len(trace_id) == 32 and int(trace_id, 16) != 0
    assert out.stderr == ""
    assert otlp_receiver.requests == 0
    # Nothing is recorded (no exporter would ever send it), but the context still travels:
    # the request's own trace id, marked not sampled.
    was_recorded, traceparent = recorded.split(" ")
    assert was_recorded == "False"
    version, propagated_trace, span_id, flags = traceparent.split("-")
    assert (version, propagated_trace) == ("00", trace_id) and int(span_id, 16) != 0
    assert int(flags, 16) & 0x01 == 0, "not sampled"


def test_with_an_endpoint_spans_are_recorded_and_sampled(otlp_receiver: OtlpReceiver):
    out = run_probe({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint})
    trace_id, recorded = out.stdout.splitlines()
    assert recorded.split(" ")[0] == "True"
    _, propagated_trace, _, flags = recorded.split(" ")[1].split("-")
    assert propagated_trace == trace_id and int(flags, 16) & 0x01 == 1, "sampled"


@pytest.mark.parametrize("env", [
    {"OTEL_TRACES_EXPORTER": "none"},
    {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
])
def test_export_can_be_turned_off_and_an_unsupported_protocol_is_refused_loudly(otlp_receiver: OtlpReceiver, env):
    out = run_probe({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, **env})
    assert len(out.stdout.splitlines()[0]) == 32
    assert otlp_receiver.requests == 0
    if "OTEL_EXPORTER_OTLP_PROTOCOL" in env:
        assert "http/protobuf" in out.stderr


def test_sdk_disabled_means_no_trace_ids_at_all(otlp_receiver: OtlpReceiver):
    out = run_probe({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, "OTEL_SDK_DISABLED": "true"})
    assert out.stdout.splitlines()[0] == "0" * 32
    assert otlp_receiver.requests == 0
