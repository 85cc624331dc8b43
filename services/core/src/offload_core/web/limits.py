"""Limits before work: what an API process refuses before any route, parser or auth runs.

`RequestLimits` is a pure ASGI layer in front of the app:

- **capacity**: more open connections or requests in progress than `OFFLOAD_HTTP_MAX_CONNECTIONS`
  gets 503 + Retry-After (the connections are counted by `web.http_protocol`);
- **admission**: a route may name a check of its own (the gateway's submits: Redis near its
  maxmemory, `web.redis_memory`), answered 503 + Retry-After before the body is read;
- **body size**: a body larger than its route's limit gets 413 at once when `Content-Length`
  says so, without reading a byte of it; a chunked body is counted as the app reads it, and
  refused the moment it passes the limit. Either way before authentication and parsing (FastAPI
  reads a JSON body before it runs the route's dependencies).

Every refusal is problem+json, carries `Connection: close` (so the server stops reading what
the client still sends), and is counted in `offload_http_refused_total{reason}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offload_core.web.problems import PROBLEM_JSON

HTTP_REFUSED = Counter("offload_http_refused_total", "Requests and connections refused by a limit, before any work",
                       ["reason"])
HTTP_CONNECTIONS = Gauge("offload_http_connections", "Open HTTP connections of this process",
                         multiprocess_mode="livesum")
HTTP_CONNECTIONS_LIMIT = Gauge("offload_http_connections_limit", "Open connections (and requests in progress) "
                               "this process accepts before it answers 503", multiprocess_mode="livemax")

# The body of a route with no limit of its own: the status API and the gateway's cancel and
# requeue take none at all.
DEFAULT_BODY_BYTES = 64 * 1024
CAPACITY_RETRY_AFTER_SECONDS = 1


class OpenConnections:
    """How many connections this process holds open; kept by `web.http_protocol`."""

    count = 0

    @classmethod
    def opened(cls) -> None:
        cls.count += 1
        HTTP_CONNECTIONS.set(cls.count)

    @classmethod
    def closed(cls) -> None:
        cls.count -= 1
        HTTP_CONNECTIONS.set(cls.count)


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    title: str
    detail: str
    reason: str  # the label of offload_http_refused_total
    retry_after: int | None = None


def problem_messages(refusal: Refusal) -> tuple[Message, Message]:
    """The two ASGI messages of a refusal (also written raw by web.http_protocol)."""
    body = json.dumps({"type": "about:blank", "title": refusal.title, "status": refusal.status,
                       "detail": refusal.detail}).encode()
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    return ({"type": "http.response.start", "status": refusal.status, "headers": headers},
            {"type": "http.response.body", "body": body, "more_body": False})


@dataclass(frozen=True, slots=True)
class RouteLimit:
    max_body_bytes: int
    admit: Callable[[], Refusal | None] | None = None  # a check of the route's own, answered before the body


class BodyTooLarge(Exception):
    pass


def too_large(limit: int) -> Refusal:
    size = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"
    return Refusal(413, "Request body too large",
                   f"the request body may be at most {limit} bytes ({size}) on this route; send a smaller one",
                   "body_too_large")


class RequestLimits:
    def __init__(self, app: ASGIApp, *, max_connections: int, routes: Mapping[tuple[str, str], RouteLimit] = {},
                 default_body_bytes: int = DEFAULT_BODY_BYTES) -> None:
        self.app, self.max_connections = app, max_connections
        self.routes = dict(routes)
        self.default = RouteLimit(default_body_bytes)
        self.in_progress = 0
        HTTP_CONNECTIONS_LIMIT.set(max_connections)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self._handle(scope, receive, send)
        finally:
            self.in_progress -= 1

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.in_progress > self.max_connections or OpenConnections.count > self.max_connections:
            await self._refuse(send, Refusal(
                503, "Server busy", f"this server is at its limit of {self.max_connections} open connections; "
                "nothing was done, try again shortly", "over_capacity", CAPACITY_RETRY_AFTER_SECONDS))
            return
        limit = self.routes.get((scope["method"], scope["path"]), self.default)
        if limit.admit is not None and (refusal := limit.admit()) is not None:
            await self._refuse(send, refusal)
            return
        declared, chunked = _body_framing(scope)
        if declared is not None and declared > limit.max_body_bytes:
            await self._refuse(send, too_large(limit.max_body_bytes))
            return
        if chunked:
            await self._counted(scope, receive, send, limit.max_body_bytes)
            return
        # No body, or one the server holds to its Content-Length: nothing to count.
        await self.app(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """A body of unknown length (chunked): refused when the bytes read pass `limit`."""
        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await self._refuse(send, too_large(limit))
                    # The app sees a client that went away; what it answers goes nowhere.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    @staticmethod
    async def _refuse(send: Send, refusal: Refusal) -> None:
        HTTP_REFUSED.labels(refusal.reason).inc()
        start, body = problem_messages(refusal)
        await send(start)
        await send(body)


def _body_framing(scope: Scope) -> tuple[int | None, bool]:
    """(Content-Length, chunked). The HTTP server has already refused a request with both, or
    with a Content-Length that is not a number."""
    declared, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked
