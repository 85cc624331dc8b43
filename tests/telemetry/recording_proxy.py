"""A recording HTTP proxy in front of the real llama.cpp server: it shows which headers the
worker's LLM call really sent (`traceparent`, `Authorization`), then passes the request on.

The upstream answer is read whole and replayed with a Content-Length: a streamed answer
arrives as one burst, which an SSE client reads the same way.

With `faults=PromptFaults()` it also plays a server having a bad moment, for the prompts that
ask for it: the worker's real OpenAI client meets a real HTTP error or a slow answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass(frozen=True)
class Fault:
    status: int | None = None  # answer this (with an OpenAI-style error body) instead of passing on
    delay: float = 0.0         # seconds to wait before answering


class PromptFaults:
    """Faults chosen by a marker in the prompt:
    `[refuse]` 400 (the job fails); `[unavailable]` 503 every time (retries, then dead);
    `[unavailable-once:<token>]` 503 the first time a token is seen (one retry, then success);
    `[slow:<seconds>]` the real answer, that much later."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, path: str, body: bytes) -> Fault | None:
        prompt = body.decode(errors="replace")
        if "[refuse]" in prompt:
            return Fault(status=400)
        if "[unavailable]" in prompt:
            return Fault(status=503)
        if "[unavailable-once:" in prompt:
            token = prompt.split("[unavailable-once:", 1)[1].split("]", 1)[0]
            with self._lock:
                first = token not in self._seen
                self._seen.add(token)
            return Fault(status=503) if first else None
        if "[slow:" in prompt:
            return Fault(delay=float(prompt.split("[slow:", 1)[1].split("]", 1)[0]))
        return None

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class RecordingProxy:
    def __init__(self, upstream: str, faults: Callable[[str, bytes], Fault | None] | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults
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
                fault = proxy.faults(self.path, body) if proxy.faults else None
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if fault and fault.status:
                    error = json.dumps({"error": {"message": f"injected by the test proxy ({fault.status})"}}).encode()
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
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
