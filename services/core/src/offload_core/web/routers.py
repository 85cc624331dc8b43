"""Adding a router's routes to an app as the app's own: `add_routes(app, router)`.

FastAPI (0.137 and later) keeps each `include_router` as a node in the app's route list, and
every request is matched through that node twice, once to find it and once inside it. On the
submit path that layer cost ~6% of the gateway's CPU per request (BENCHMARKS.md, "Seventh
round"); routes declared with `@app.post` do not pay it. Our routers set their prefix and tags
where they are declared and add nothing at inclusion, so their routes can be taken as they are.

One difference from `include_router`: `app.dependency_overrides` does not reach these routes
(they were made by their own router). Nothing here overrides dependencies; tests run the real ones.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Append each router's routes, in order, to the app's own route list."""
    for router in routers:
        app.router.routes.extend(router.routes)
