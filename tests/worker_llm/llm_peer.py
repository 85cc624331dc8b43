"""A scripted OpenAI-style HTTP peer: real HTTP/1.1 over a socket, answers chosen by the test.

It produces what a real server will not on demand: 429 and 503 with Retry-After, error bodies,
streams cut off mid-body.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    """One scripted answer. `events` makes a chunked text/event-stream of `data:` lines."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    json_body: object | None = None
    events: list[str] | None = None
    # Close the connection in the middle of the chunked body, as a crashing server would.
    cut_off: bool = False


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict
    client_port: int  # the same port on two requests means one reused connection


def chunk(content: str | None = None, *, finish: str | None = None, role: str | None = None, model: str = "peer-model") -> str:
    delta: dict[str, str] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return json.dumps({"id": "c1", "object": "chat.completion.chunk", "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def usage_chunk(prompt: int, completion: int) -> str:
    return json.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "peer-model", "choices": [],
                       "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}})


def good_stream(*pieces: str) -> Reply:
    return Reply(events=[chunk(role="assistant"), *(chunk(p) for p in pieces), chunk(finish="stop"),
                         usage_chunk(7, len(pieces)), "[DONE]"])


class ScriptedPeer:
    """Answers POSTs with the scripted replies in order (the last one repeats) and records them."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[SeenRequest] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                peer.requests.append(SeenRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(body or b"{}"), self.client_address[1]))
                reply = peer.script[min(len(peer.requests), len(peer.script)) - 1]
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.events is None:
                    payload = json.dumps(reply.json_body).encode()
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for data in reply.events:
                    event = f"data: {data}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                if reply.cut_off:
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "ScriptedPeer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
