"""`/` (the page), `/dashboard/config.json` (what the page needs to know, nothing about jobs) and
`/dashboard/static/*` (its script and styles)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI
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


def dashboard_router(settings: Settings) -> APIRouter:
    gateway_url = settings.gateway_public_url.rstrip("/")
    config = {"gateway_url": gateway_url,
              "tracing_ui_url_template": check_trace_template(settings.tracing_ui_url_template)}
    headers = page_headers(origin(gateway_url))
    index = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(index, headers=headers)

    @router.get("/dashboard/config.json")
    async def dashboard_config() -> JSONResponse:
        return JSONResponse(config, headers={"Cache-Control": "no-cache"})

    return router


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    add_routes(app, dashboard_router(settings))
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
