"""Which service answers which request, so that a request sent to the other one is told where to go.

The gateway takes writes (submit, cancel, requeue, bulk dead-letter work, pipelines) and all of
OpenAI's Files and Batches API, its reads too (the SDK works with one base URL); the status
service takes the other reads (jobs, pipelines, results, events, queues, workers, usage, the
dashboard). A
`GET /v1/jobs/{id}` sent to the gateway, or a submit sent to the status service, gets a problem
naming the right URL (`web/problems.py`). tests/e2e/test_api_guidance.py checks this table
against both apps' routes.
"""

from __future__ import annotations

import re

GATEWAY, STATUS = "gateway", "status"
_ID = r"[0-9a-fA-F-]{36}"

ROUTES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (service, method, re.compile(f"^{path}$")) for service, method, path in (
        (GATEWAY, "POST", r"/v1/jobs/(ocr|llm|embed|probe)"),
        (GATEWAY, "DELETE", f"/v1/jobs/{_ID}"),
        (GATEWAY, "POST", f"/v1/jobs/{_ID}/retry"),
        (GATEWAY, "POST", r"/v1/dead-letters/(requeue|purge)"),
        (GATEWAY, "POST", r"/v1/pipelines"),
        (GATEWAY, "DELETE", f"/v1/pipelines/{_ID}"),
        (GATEWAY, "POST", f"/v1/pipelines/{_ID}/retry"),
        (GATEWAY, "POST", r"/v1/(files|batches)"),
        (GATEWAY, "GET", r"/v1/(files|batches)"),
        (GATEWAY, "GET", r"/v1/files/[^/]+(/content)?"),
        (GATEWAY, "DELETE", r"/v1/files/[^/]+"),
        (GATEWAY, "GET", r"/v1/batches/[^/]+"),
        (GATEWAY, "POST", r"/v1/batches/[^/]+/cancel"),
        (STATUS, "GET", f"/v1/jobs/{_ID}(/result|/events)?"),
        (STATUS, "GET", f"/v1/pipelines/{_ID}(/events)?"),
        (STATUS, "GET", r"/v1/(jobs|pipelines)"),
        (STATUS, "GET", r"/v1/(queues|dead-letters|workers|throughput|usage)"),
    )
)

# The setting that holds each service's public URL (offload_core.settings.Settings).
URL_SETTING = {GATEWAY: "gateway_public_url", STATUS: "status_public_url"}


def served_by(method: str, path: str) -> str | None:
    """The service that serves `method path`, or None for a request neither does."""
    for service, route_method, pattern in ROUTES:
        if route_method == method and pattern.match(path):
            return service
    return None
