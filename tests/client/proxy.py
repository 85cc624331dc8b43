"""A TCP proxy a test can cut: every open connection is closed at once, as when a load
balancer restarts or a phone changes networks; or it can refuse to connect anyone for a while,
as a server that is down. It also keeps the head of each HTTP request it forwarded, so a test
can see what a reconnecting client sent (e.g. Last-Event-ID). `StreamLimitProxy` also reads
the HTTP it forwards, to apply the status service's event-stream limits."""

from __future__ import annotations

import json
import socket
import threading
import time

from tests.support.processes import free_port


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.request_heads: list[str] = []
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        self.refusing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Close every connection open right now (new ones are still accepted)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def go_down(self) -> None:
        """Cut every connection and refuse new ones until `come_back()`."""
        self.refusing = True
        self.cut()

    def come_back(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                downstream.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._pairs.append((downstream, upstream))
            threading.Thread(target=self._pump, args=(downstream, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, is_request: bool) -> None:
        try:
            self._forward(source, sink, is_request)
        except (OSError, ValueError):  # a socket closed under us: by cut(), or by the other side
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _forward(self, source: socket.socket, sink: socket.socket, is_request: bool) -> None:
        while chunk := source.recv(65536):
            # Requests here are small GETs: each starts a chunk of its own.
            if is_request and chunk[:8].split(b" ", 1)[0] in (b"GET", b"POST", b"DELETE"):
                with self._lock:
                    self.request_heads.append(chunk.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
            sink.sendall(chunk)


class StreamLimitProxy(CuttableProxy):
    """A proxy in front of the status service that applies to event streams the limits issue 18
    gives the service itself: it ends each stream cleanly after `stream_lifetime` events (the
    maximum lifetime, counted in events so that a test knows where it falls), and answers the
    next `refusals` stream requests with 429 and `Retry-After: refusal_retry_after` (the
    per-tenant cap). It reads the HTTP it forwards (the service sends each event as one chunk),
    so a stream always ends between two events, as the server would end it. `request_times`
    holds when each request head in `request_heads` arrived."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.stream_lifetime: int | None = None
        self.refusals = 0
        self.refusal_retry_after = 1
        self.request_times: list[float] = []
        super().__init__(target_host, target_port)

    def _forward(self, source: socket.socket, sink: socket.socket, is_request: bool) -> None:
        reader = source.makefile("rb")
        while head := _read_head(reader):
            if is_request:
                if not self._forward_request(head, reader, source, sink):
                    return
            elif not self._forward_answer(head, reader, sink):
                return

    def _forward_request(self, head: bytes, reader, client: socket.socket, server: socket.socket) -> bool:
        text = head.decode("latin-1")
        with self._lock:
            self.request_heads.append(text.rstrip("\r\n"))
            self.request_times.append(time.monotonic())
            refuse = "/events " in text.split("\r\n", 1)[0] and self.refusals > 0
            if refuse:
                self.refusals -= 1
        if refuse:
            body = json.dumps({"type": "about:blank", "title": "Too Many Requests", "status": 429,
                               "detail": "too many event streams open for your tenant; close one or "
                                         "try again later"}).encode()
            client.sendall(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/problem+json\r\n"
                           b"Retry-After: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                           % (self.refusal_retry_after, len(body), body))
            return False
        server.sendall(head + reader.read(_content_length(head)))
        return True

    def _forward_answer(self, head: bytes, reader, client: socket.socket) -> bool:
        client.sendall(head)
        if b"transfer-encoding: chunked" not in head.lower():
            client.sendall(reader.read(_content_length(head)))
            return True
        events = 0
        while True:
            size_line = reader.readline()
            size = int(size_line.split(b";")[0], 16)
            data = reader.read(size + 2)  # the chunk's data and its CRLF
            is_event = data.startswith(b"id:")  # not the `retry:` line, not a keepalive comment
            if is_event and self.stream_lifetime is not None and events >= self.stream_lifetime:
                client.sendall(b"0\r\n\r\n")  # the last chunk: a clean end, then the connection closes
                return False
            client.sendall(size_line + data)
            events += is_event
            if size == 0:
                return True  # the answer ended on its own (uvicorn sends no trailers)


def _read_head(reader) -> bytes:
    """An HTTP message's start line and headers, through the blank line; b"" at the end."""
    head = b""
    while line := reader.readline():
        head += line
        if line == b"\r\n":
            return head
    return b""


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0
