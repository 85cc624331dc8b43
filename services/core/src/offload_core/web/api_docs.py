"""The interactive API docs (/docs: Swagger UI) served with their assets from this process, not a
CDN: the `fastapi-offline` package ships them, so the docs work with no network.

FastAPI's own pages load Swagger UI and ReDoc from a CDN; each service is made with
`docs_url=None, redoc_url=None` and calls `install_api_docs` instead. ReDoc is not served: even
from local assets it fetches its logo from its CDN.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"
# What FastAPI's constructor takes to leave /docs and /redoc to install_api_docs.
NO_CDN_DOCS = {"docs_url": None, "redoc_url": None}


def install_api_docs(app: FastAPI) -> None:
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title}: API docs",
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_URL}/favicon.png")

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
