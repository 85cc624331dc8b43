"""/metrics of an API process, on a port of its own (`OFFLOAD_METRICS_PORT`, default 9090).

The API port is the one the Ingress routes to the world; the metrics port is for Prometheus
inside the cluster. It is a second, small server on the same event loop: `GET /metrics` (the
Prometheus text format), one request per connection, a few at a time, each with a deadline. A
scrape reads only what the process already holds: no Redis work (the status service refreshes
its Redis-backed gauges in the background, `web.queue_metrics`). A service may add one more
read-only route (`extra`): the status service answers KEDA's `GET /scaling/<type>` here, so
that no Ingress ever routes it and NetworkPolicy opens it to Prometheus and KEDA only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress

from offload_core.observability.exposition import render_latest

log = logging.getLogger("offload.metrics")

MAX_SCRAPES = 4                # connections served at once; more are closed at once
REQUEST_DEADLINE_SECONDS = 5   # to send the request head
MAX_REQUEST_HEAD_BYTES = 8192

# A further GET route: given the path, its answer (status, JSON body), or None when the path is not its.
ExtraRoute = Callable[[str], Awaitable["tuple[int, bytes] | None"]]


class MetricsServer:
    def __init__(self, host: str, port: int, extra: ExtraRoute | None = None) -> None:
        self.host, self.port = host, port
        self._extra = extra
        self._server: asyncio.Server | None = None
        self._serving = 0

    async def start(self) -> "MetricsServer":
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  limit=MAX_REQUEST_HEAD_BYTES)
        log.info("metrics on port %d (GET /metrics)", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._serving >= MAX_SCRAPES:
            writer.close()
            return
        self._serving += 1
        try:
            async with asyncio.timeout(REQUEST_DEADLINE_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
                method, _, rest = head.partition(b" ")
                path = rest.partition(b" ")[0].partition(b"?")[0]
                head_only = method == b"HEAD"
                if method in (b"GET", b"HEAD") and path == b"/metrics":
                    content_type, body = await asyncio.to_thread(render_latest)
                    await _answer(writer, 200, content_type, body, head_only=head_only)
                    return
                if method in (b"GET", b"HEAD") and self._extra is not None:
                    if (answer := await self._extra(path.decode("latin-1"))) is not None:
                        await _answer(writer, answer[0], "application/json", answer[1], head_only=head_only)
                        return
                await _answer(writer, 404, "text/plain; charset=utf-8", b"only GET /metrics is served here\n",
                              head_only=head_only)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that sent no proper request in time gets nothing
        finally:
            self._serving -= 1
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()


async def _answer(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes, *,
                  head_only: bool) -> None:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
    if not head_only:
        writer.write(body)
    await writer.drain()
