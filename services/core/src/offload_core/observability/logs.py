"""JSON-lines logging for every Offload process (stdout), with trace, span and job ids when known.

`trace_id`/`span_id` come from the current span; `job_id` from `bind_job` (the worker binds it
for the length of a job, the gateway once it has stored one). Secrets never leave: values
registered with `redact` (API keys, webhook secrets, the LLM key, the S3 credentials) and
anything shaped like a bearer token or a password in a URL are replaced before the line is written.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace

_SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("offload_job_id", default=None)
_secrets: set[str] = set()
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]+@")


def bind_job(job_id: str) -> contextvars.Token:
    """Put `job_id` on every log line of this context until `unbind_job(token)`."""
    return _job_id.set(job_id)


def unbind_job(token: contextvars.Token) -> None:
    _job_id.reset(token)


def redact(values: Iterable[str]) -> None:
    """Never write these strings (secrets known to this process) to the log."""
    for value in values:
        if value and len(value) >= 4:
            _secrets.add(value)
            _secrets.add(json.dumps(value)[1:-1])  # as it appears inside an encoded line


def scrub(text: str) -> str:
    # The substring checks first: most lines hold neither shape, and a regex scan of every
    # line was half the cost of writing one (a few lines per job, one per request).
    if "bearer" in text.lower():
        text = _BEARER.sub(r"\1 [redacted]", text)
    if "://" in text and "@" in text:
        text = _URL_PASSWORD.sub(r"\1:[redacted]@", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


# Not extras: the record's own attributes, and what only repeats the message for a colour terminal.
_NOT_EXTRA = _SKIP | {"color_message"}
_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _timestamp(created: float, msecs: float) -> str:
    global _second
    whole = int(created)
    if whole != _second[0]:  # strftime once a second, not once a line
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int(msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            out["trace_id"] = format(ctx.trace_id, "032x")
            out["span_id"] = format(ctx.span_id, "016x")
        job_id = _job_id.get()
        if job_id:
            out["job_id"] = job_id
        for key, value in record.__dict__.items():
            if key not in _NOT_EXTRA and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return out

    def format(self, record: logging.LogRecord) -> str:
        # Scrubbed after encoding, so a secret inside any field (extras, tracebacks) is caught.
        return scrub(json.dumps(self.fields(record), default=str))


class TextFormatter(JsonFormatter):
    """One readable line per record, for people watching `make run` (OFFLOAD_LOG_FORMAT=text)."""

    def format(self, record: logging.LogRecord) -> str:
        f = self.fields(record)
        line = f"{f['ts'][11:23]} {f['level']:<7} {f['logger']}: {f['msg']}"
        if "job_id" in f:
            line += f"  [job {f['job_id']}]"
        if "exc" in f:
            line += "\n" + f["exc"]
        return scrub(line)


def configure_logging() -> None:
    """Route every logger (ours, uvicorn's, Celery's) through one formatter on stdout: JSON lines,
    or readable text when OFFLOAD_LOG_FORMAT=text (what `make run` uses)."""
    handler = logging.StreamHandler(sys.stdout)
    text = os.environ.get("OFFLOAD_LOG_FORMAT", "json").lower() == "text"
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("OFFLOAD_LOG_LEVEL", "INFO").upper())
    # No line shows the caller's file and line, thread or process, so records need not look
    # them up: the logging HOWTO's "Optimization" switches, a quarter of a line's cost.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.captureWarnings(True)  # library warnings become log lines like any other
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.app.trace"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # billiard (Celery's pool) turns propagation off on its logger, so it gets the handler
    # itself; below WARNING it only narrates process start-ups.
    pool_log = logging.getLogger("multiprocessing")
    pool_log.handlers[:] = [handler]
    pool_log.setLevel(logging.WARNING)


def redact_settings(settings: Any) -> None:
    """Register every secret an `offload_core.settings.Settings` holds with `redact`."""
    from urllib.parse import urlsplit

    values = [key for _, key in settings.api_key_pairs]
    values += [secret for _, secret in settings.webhook_secret_pairs]
    values.append(settings.llm_api_key)
    values.append(urlsplit(settings.redis_url).password or "")
    values.append(urlsplit(settings.s3_endpoint_url).password or "")
    try:
        values += settings.s3_credentials  # the key id too: it names the account
    except OSError:
        pass  # unreadable files: settings validation says so where S3 is in use
    redact(values)
