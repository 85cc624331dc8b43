"""`/` (the page), `/dashboard/config.json` (what the page needs to know, nothing about jobs) and
`/dashboard/static/*` (its script and styles)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from offload_core.settings import Settings
from offload_core.web.routers import add_routes

STATIC_DIR = Path(__file__).parent / "static"
TRACE_ID_FIELD = "{trace_id}"


def origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def check_trace_template(template: str) -> str:
    """The template as given, or a ValueError that stops the service from starting with a
    template that could never make a working link."""
    if template:
        origin(template)
        if TRACE_ID_FIELD not in template:
            raise ValueError(f"OFFLOAD_TRACING_UI_URL_TEMPLATE must contain {TRACE_ID_FIELD}")
    return template


def page_headers(gateway_origin: str) -> dict[str, str]:
    # The page only talks to itself and to the gateway (cancel, requeue); no inline script or
    # style, no framing, and no Referer that could carry a job id elsewhere.
    csp = "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        f"connect-src 'self' {gateway_origin}", "base-uri 'none'", "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def gateway_url_for(configured: str, page_host: str | None) -> str:
    """The gateway as the browser showing this page can reach it. A gateway configured on a
    loopback name (`make run`: http://localhost:8000) is on the same machine as this service;
    a user who reached the page by another name (127.0.0.1, the machine's name or address)
    reaches the gateway by that name too, on the gateway's own port."""
    parts = urlsplit(configured)
    try:
        page_name = urlsplit(f"//{page_host}").hostname if page_host and HOST_HEADER.match(page_host) else None
    except ValueError:
        page_name = None
    if parts.hostname not in LOOPBACK_NAMES or not page_name or page_name == parts.hostname:
        return configured
    host = f"[{page_name}]" if ":" in page_name else page_name
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def dashboard_router(settings: Settings) -> APIRouter:
    configured = settings.gateway_public_url.rstrip("/")
    origin(configured)  # refuse to start with a URL no page could call
    trace_template = check_trace_template(settings.tracing_ui_url_template)
    index = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page(request: Request) -> HTMLResponse:
        gateway = gateway_url_for(configured, request.headers.get("host"))
        return HTMLResponse(index, headers=page_headers(origin(gateway)))

    @router.get("/dashboard/config.json")
    async def dashboard_config(request: Request) -> JSONResponse:
        config = {"gateway_url": gateway_url_for(configured, request.headers.get("host")),
                  "tracing_ui_url_template": trace_template}
        return JSONResponse(config, headers={"Cache-Control": "no-cache"})

    return router


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    add_routes(app, dashboard_router(settings))
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
