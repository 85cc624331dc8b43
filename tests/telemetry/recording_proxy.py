"""A recording HTTP proxy in front of the real llama.cpp server: it shows which headers the
worker's LLM call really sent (`traceparent`, `Authorization`), then passes the request on.

The upstream answer is read whole and replayed with a Content-Length: a streamed answer
arrives as one burst, which an SSE client reads the same way.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[tuple[str, dict[str, str]]] = []  # (path, headers with lower-case names)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                proxy.seen.append((self.path, headers))
                forward = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
                with httpx.Client(timeout=120) as client:
                    answer = client.post(proxy.upstream + self.path, content=body, headers=forward)
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "RecordingProxy":
        threading.Thread(target=self._server.serve_forever, name="llm-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
