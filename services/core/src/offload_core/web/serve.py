"""Run an API service under uvicorn, configured from the environment."""

from __future__ import annotations

import os

import uvicorn

from offload_core.observability.logs import configure_logging
from offload_core.observability.telemetry import setup_tracing, shutdown_tracing
from offload_core.settings import Settings
from offload_core.web.http_protocol import protocol_for


def serve(factory: str, *, default_port: int) -> None:
    configure_logging()
    settings = Settings()  # read here too for the HTTP limits; invalid settings stop the process here
    # "offload_gateway.app:create_app" -> service.name "offload-gateway" (unless OTEL_SERVICE_NAME says otherwise)
    setup_tracing(factory.split(".", 1)[0].replace("_", "-"))
    try:
        uvicorn.run(
            factory,
            factory=True,
            host=os.environ.get("OFFLOAD_HOST", "0.0.0.0"),
            port=int(os.environ.get("OFFLOAD_PORT", default_port)),
            log_config=None,  # our JSON logging (offload_core.observability.logs) handles uvicorn's loggers too
            proxy_headers=True,
            forwarded_allow_ips=os.environ.get("OFFLOAD_FORWARDED_ALLOW_IPS", "127.0.0.1"),
            timeout_graceful_shutdown=int(os.environ.get("OFFLOAD_GRACEFUL_SHUTDOWN_SECONDS", "20")),
            access_log=False,  # written by our request middleware (web.observability), with route and duration
            # Header and body read timeouts, a header size limit, the open-connection count
            # (web.http_protocol); the connection cap itself is web.limits' (a problem+json 503).
            http=protocol_for(settings),
        )
    finally:
        shutdown_tracing()  # the last requests' spans leave before the process does
