"""A worker's small HTTP port: /healthz, /readyz (Redis answers) and /metrics.

Served by a thread of the worker's main process (not the job processes), so a long job never
makes the worker look dead to its liveness probe. What /healthz says is not the thread's own
word, though: it fails (503) once the consumer loop has made no progress for
OFFLOAD_WORKER_LIVENESS_SECONDS while Redis answers (worker/presence.py), so a hung worker is
restarted instead of looking idle forever.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis
from redis.exceptions import RedisError

from offload_core.settings import Settings
from offload_core.worker.presence import Presence

log = logging.getLogger("offload.worker.http")


def start_health_server(settings: Settings, client: redis.Redis, presence: Presence) -> ThreadingHTTPServer | None:
    if not settings.worker_http_port:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                alive, why = presence.liveness()
                body = {"status": "ok", "detail": why} if alive else {
                    "type": "about:blank", "title": "Consumer loop stalled", "status": 503, "detail": why}
                self._send(200 if alive else 503, "application/json" if alive else "application/problem+json",
                           json.dumps(body).encode())
            elif path == "/readyz":
                try:
                    ok = bool(client.ping())
                except (RedisError, OSError):
                    ok = False
                body = {"status": "ready"} if ok else {"status": "unready", "detail": "Redis cannot be reached"}
                self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                from offload_core.observability.exposition import render_latest

                content_type, payload = render_latest()
                self._send(200, content_type, payload)
            else:
                self._send(404, "application/problem+json", json.dumps(
                    {"title": "Not found", "status": 404, "detail": "try /healthz, /readyz or /metrics"}).encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - probes are not news
            return

    server = ThreadingHTTPServer(("0.0.0.0", settings.worker_http_port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    log.info("worker health and metrics on port %d", settings.worker_http_port)
    return server
