"""Trace context for jobs: the id a job records, the publish span, and the job's run context.

A job's trace: the gateway's server span -> `publish_span` (the PRODUCER span of its queue
message, whose context rides in the message headers) -> the worker's Celery run span
(opentelemetry-instrumentation-celery continues the context from those headers) -> OCR page
and LLM spans -> Redis and HTTP calls. The SDK is set up by `offload_core.observability.telemetry`; without
it every span here is a no-op and jobs carry no trace id.
"""

from __future__ import annotations

import os
import random
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from offload_core.observability import logs

tracer = trace.get_tracer("offload")

JOB_ID_ATTRIBUTE = "offload.job_id"
OUTCOME_ATTRIBUTE = "offload.outcome"
ATTEMPT_ATTRIBUTE = "offload.attempt"
_ERROR_OUTCOMES = frozenset({"failed", "dead", "retrying"})
_job_context_pid = 0  # the process whose signals are connected (a forked child connects its own)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def job_trace_context() -> dict[str, Any]:
    """`trace_id` for a NewJob: the trace of the request submitting it (the client's, if it sent
    a `traceparent`). The queue message joins the same trace through `publish_span`."""
    return {"trace_id": current_trace_id()}


@contextmanager
def publish_span(task_name: str, queue: str, job_id: str) -> Iterator[dict[str, str]]:
    """The PRODUCER span of a job message; yields the headers that carry its context.

    The gateway writes its messages from a Lua script rather than through Celery's publish
    path, so Celery's `before_task_publish` never fires for them; this is the span the Celery
    instrumentation would have made there (same name and attributes), so a worker's run span
    hangs under it exactly as under a message sent with `send_task`.
    """
    request_span = trace.get_current_span()
    if request_span.get_span_context().is_valid and not request_span.is_recording():
        # Nothing records this trace here (no exporter, or sampled out), so a publish span
        # would be made only to be dropped (~3% of the submit path's CPU): the message
        # carries the request's own context, flagged not sampled, and the worker records
        # nothing either, exactly as it would under a dropped publish span.
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier
        return
    attributes = {
        "celery.action": "apply_async",
        "celery.task_name": task_name,
        "messaging.message.id": job_id,
        "messaging.destination": queue,
        JOB_ID_ATTRIBUTE: job_id,
    }
    with tracer.start_as_current_span(f"apply_async/{task_name}", kind=SpanKind.PRODUCER,
                                      attributes=attributes):
        carrier = {}
        propagate.inject(carrier)
        yield carrier


def _job_trace_parent(trace_id: str | None) -> context.Context | None:
    """A remote parent in the job's trace: its record keeps only the trace id, not a span."""
    if not trace_id:
        return None
    try:
        ctx = SpanContext(int(trace_id, 16), random.getrandbits(64) or 1, is_remote=True,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    except ValueError:
        return None
    return trace.set_span_in_context(NonRecordingSpan(ctx)) if ctx.is_valid else None


@contextmanager
def in_job_trace(trace_id: str | None, span_name: str, job_id: str) -> Iterator[None]:
    """A span in a job's own trace, for work done on the job outside any request (the
    lost-message sweep); whatever the span publishes joins that trace."""
    with tracer.start_as_current_span(span_name, context=_job_trace_parent(trace_id),
                                      attributes={JOB_ID_ATTRIBUTE: job_id}):
        yield


def record_run_outcome(outcome: str, attempt: int, error_type: str | None = None) -> None:
    """How this run ended, on the run span (the current span while a job task runs): its outcome
    and attempt, and an error status when it failed, died or will be retried. A collector that
    samples whole traces keeps the jobs that went wrong by these (k8s/addons/
    otel-collector-tail-sampling.yaml); the runner catches the job's exception, so the Celery
    instrumentation alone would end every run as a success."""
    span = trace.get_current_span()
    span.set_attribute(OUTCOME_ATTRIBUTE, outcome)
    span.set_attribute(ATTEMPT_ATTRIBUTE, attempt)
    if outcome in _ERROR_OUTCOMES:
        span.set_status(Status(StatusCode.ERROR, error_type or outcome))


def job_trace_headers(trace_id: str | None) -> dict[str, str]:
    """Message headers (`traceparent`) whose run joins the job's trace, for a message published
    where no tracer runs: the worker's main process, after the hard time limit killed a job."""
    carrier: dict[str, str] = {}
    parent = _job_trace_parent(trace_id)
    if parent is not None:
        propagate.inject(carrier, context=parent)
    return carrier


def install_job_context(task_names: Collection[str]) -> None:
    """While a job task runs: its id on the run span and in every log line (`job_id`).

    Connected after the Celery instrumentation, so its run span is the current span here.
    The first argument of every Offload task is the job id.
    """
    from celery.signals import task_postrun, task_prerun

    global _job_context_pid
    if _job_context_pid == os.getpid():
        return
    _job_context_pid = os.getpid()
    names = frozenset(task_names)
    tokens: dict[str, Any] = {}

    @task_prerun.connect(weak=False)
    def _enter(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
        if task is None or task.name not in names or not args or task_id is None:
            return
        job_id = str(args[0])
        trace.get_current_span().set_attribute(JOB_ID_ATTRIBUTE, job_id)
        tokens[task_id] = logs.bind_job(job_id)

    @task_postrun.connect(weak=False)
    def _leave(task_id: str | None = None, **_: Any) -> None:
        token = tokens.pop(task_id, None) if task_id else None
        if token is not None:
            logs.unbind_job(token)
