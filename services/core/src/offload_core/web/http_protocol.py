"""uvicorn's HTTP protocol with the limits it lacks: header and body read timeouts, a header
size limit, and a count of open connections (for `web.limits`' capacity cap).

uvicorn bounds the idle time between two requests of a connection (`timeout_keep_alive`) but
not the time a request takes to arrive: a client sending one header byte every few seconds
(slowloris) holds its connection, and its share of the process, for as long as it likes. Here:

- the headers of a request must be complete within `OFFLOAD_HTTP_HEADER_TIMEOUT_SECONDS` of its
  connection opening (or of its first byte, on a kept-alive connection), and hold at most
  MAX_HEADER_BYTES; otherwise 408 (or 431) problem+json and the connection is closed;
- its body must be complete within `OFFLOAD_HTTP_BODY_TIMEOUT_SECONDS` of its headers;
  otherwise 408 (when no answer has started) and the connection is closed; the app sees the
  client go away.

A timer is only armed when a read of the socket leaves a request incomplete, so a request that
arrives whole (every ordinary one) costs nothing here. This subclasses uvicorn's httptools
protocol and uses its internals (docs/architecture.md, "Bets on other projects"; checked by
tests/core/test_upstream_bets.py).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from offload_core.settings import Settings
from offload_core.web.limits import HTTP_REFUSED, OpenConnections, Refusal, problem_messages

MAX_HEADER_BYTES = 64 * 1024
HEADERS_TOO_LARGE = Refusal(431, "Request headers too large",
                            f"the request line and headers may hold at most {MAX_HEADER_BYTES} bytes",
                            "headers_too_large")


class HeadersTooLarge(Exception):
    """Raised inside the parser: uvicorn answers a parser error with send_400_response (below)."""


def _raw_response(refusal: Refusal) -> bytes:
    start, body = problem_messages(refusal)
    lines = [b"HTTP/1.1 %d %s\r\n" % (refusal.status, refusal.title.encode())]
    lines += [name + b": " + value + b"\r\n" for name, value in start["headers"]]
    return b"".join(lines) + b"\r\n" + body["body"]


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = 10.0  # set per process by `protocol_for(settings)`
    body_timeout = 120.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        OpenConnections.opened()
        self._reading_headers = True   # the current request's headers are not complete yet
        self._reading_body = False     # ... its body is not complete yet
        self._header_bytes = 0           # what the socket brought while the headers were incomplete
        self._parsed_header_bytes = 0    # the request line and headers, as parsed
        self._timer: asyncio.TimerHandle | None = None
        self._timer_for = ""
        self._arm("headers", self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        OpenConnections.closed()
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._reading_headers:
            if self._header_bytes > MAX_HEADER_BYTES:  # still incomplete, and already too large
                self._refuse(HEADERS_TOO_LARGE)
            elif self._timer_for != "headers":
                self._arm("headers", self.header_timeout)
        elif self._reading_body:
            if self._timer_for != "body":
                self._arm("body", self.body_timeout)
        elif self._timer is not None:
            self._disarm()

    # httptools callbacks: they only note where the request stands (timers are set above).
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_bytes = 0
        self._parsed_header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_header_bytes(self, n: int) -> None:
        self._parsed_header_bytes += n
        if self._parsed_header_bytes > MAX_HEADER_BYTES:
            raise HeadersTooLarge  # headers that completed in the read that took them over the limit

    def send_400_response(self, msg: str) -> None:
        if self._parsed_header_bytes > MAX_HEADER_BYTES:
            self._refuse(HEADERS_TOO_LARGE)
        else:
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._reading_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_body = False
        super().on_message_complete()

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._timer_for = what
        self._timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_for = ""

    def _expired(self, what: str) -> None:
        self._timer = None
        self._timer_for = ""
        if self.transport.is_closing():
            return
        if what == "headers":
            self._refuse(Refusal(408, "Request too slow",
                                 f"the request's headers did not arrive within {self.header_timeout:g} s",
                                 "header_timeout"))
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            HTTP_REFUSED.labels("body_timeout").inc()
            self.transport.close()
            return
        self._refuse(Refusal(408, "Request too slow",
                             f"the request's body did not arrive within {self.body_timeout:g} s of its headers",
                             "body_timeout"))

    def _refuse(self, refusal: Refusal) -> None:
        """Answer with a problem and close the connection; the app (if it runs) sees the client go."""
        HTTP_REFUSED.labels(refusal.reason).inc()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True      # what the app sends from now on goes nowhere
            cycle.message_event.set()      # and a read it waits in returns http.disconnect
        self.transport.write(_raw_response(refusal))
        self.transport.close()


def protocol_for(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn should use (`uvicorn.run(http=...)`) with this process's limits."""
    return type("OffloadHttpProtocol", (GuardedHttpToolsProtocol,), {
        "header_timeout": settings.http_header_timeout_seconds,
        "body_timeout": settings.http_body_timeout_seconds,
    })
