"""A TCP proxy a test can cut: every open connection is closed at once, as when a load
balancer restarts or a phone changes networks; or it can refuse to connect anyone for a while,
as a server that is down. It also keeps the head of each HTTP request it forwarded, so a test
can see what a reconnecting client sent (e.g. Last-Event-ID)."""

from __future__ import annotations

import socket
import threading

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
            while chunk := source.recv(65536):
                # Requests here are small GETs: each starts a chunk of its own.
                if is_request and chunk[:8].split(b" ", 1)[0] in (b"GET", b"POST", b"DELETE"):
                    with self._lock:
                        self.request_heads.append(chunk.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
