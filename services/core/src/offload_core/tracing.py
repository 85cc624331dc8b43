"""Trace context for jobs: the id a job records and the headers its queue message carries.

Configuration is only the standard OTEL_* variables (see offload_core.telemetry when set up);
with no SDK configured the current span is invalid and jobs simply carry no trace id.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate, trace


def job_trace_context() -> dict[str, Any]:
    """`trace_id` and `trace_headers` for a NewJob, taken from the active span."""
    ctx = trace.get_current_span().get_span_context()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {
        "trace_id": format(ctx.trace_id, "032x") if ctx.is_valid else None,
        "trace_headers": carrier or None,
    }
