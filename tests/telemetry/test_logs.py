"""Log lines are JSON with the trace, span and job they belong to, and never carry a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from offload_core.observability.logs import JsonFormatter, bind_job, redact, unbind_job


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.telemetry.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, out
    logger.handlers[:] = []


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_inside_a_span_and_a_job_names_both(log):
    logger, out = log
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("tests")
    token = bind_job("0f8c2b1e-1d7a-4a51-9a51-2f2d5b0c9e11")
    try:
        with tracer.start_as_current_span("run") as span:
            logger.info("page %d done", 3)
    finally:
        unbind_job(token)
    logger.info("between jobs")
    inside, outside = lines(out)
    ctx = span.get_span_context()
    assert inside["msg"] == "page 3 done"
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")
    assert inside["job_id"] == "0f8c2b1e-1d7a-4a51-9a51-2f2d5b0c9e11"
    assert not {"trace_id", "span_id", "job_id"} & outside.keys()


def test_registered_secrets_and_credential_shapes_never_reach_the_log(log):
    logger, out = log
    redact(["tenant-key-5ZQ3x9", 'quote"and\\slash-secret'])
    logger.info("key tenant-key-5ZQ3x9 in the message", extra={"header": "Bearer sk-live-0123456789abcdef"})
    logger.info("connecting to redis://default:hunter2-pass@redis:6379/0")
    logger.info("odd secret %s", 'quote"and\\slash-secret')
    logger.info("retrying with AUTHORIZATION: BEARER sk-upper-0123456789abcdef to HTTPS://bot:hunter3-pass@hooks")
    try:
        raise RuntimeError("failed with tenant-key-5ZQ3x9")
    except RuntimeError:
        logger.exception("boom")
    text = out.getvalue()
    for secret in ("tenant-key-5ZQ3x9", "sk-live-0123456789abcdef", "hunter2-pass", "slash-secret",
                   "sk-upper-0123456789abcdef", "hunter3-pass"):
        assert secret not in text
    first, second, third, upper, fourth = lines(out)
    assert first["header"] == "Bearer [redacted]"
    assert second["msg"] == "connecting to redis://default:[redacted]@redis:6379/0"
    assert third["msg"] == "odd secret [redacted]"
    assert upper["msg"] == "retrying with AUTHORIZATION: BEARER [redacted] to HTTPS://bot:[redacted]@hooks"
    assert "[redacted]" in fourth["exc"]
