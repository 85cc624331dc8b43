"""The gateway application: accepts jobs fast. The submit path is routes.py -> submission.py
-> offload_core.jobs.store.JobStore.submit (one Lua script: record + payload + queue message)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from offload_core.llm.models import check_model_map
from offload_core.settings import Settings
from offload_core.web.api_docs import NO_CDN_DOCS, install_api_docs
from offload_core.web.deps import lifespan_for
from offload_core.web.health import router as health_router
from offload_core.web.limits import RequestLimits, RouteLimit
from offload_core.web.observability import FASTAPI_TELEMETRY_OFF, install_observability
from offload_core.web.problems import install_problem_handlers
from offload_core.web.redis_memory import MemoryGuard
from offload_core.web.routers import add_routes
from offload_core.web.service_map import GATEWAY

from .batches import router as batches_router
from .dead_letters import router as dead_letters_router
from .files import router as files_router
from .languages import InstalledLanguages
from .pipelines import router as pipelines_router
from .routes import router as jobs_router
from .uploads import FORM_OVERHEAD_BYTES


class BrowserOnlyCORS(CORSMiddleware):
    """CORS for the requests browsers make; API clients (no `Origin`) go straight through.

    Starlette's middleware rewrites every response to add `Vary: Origin`, a few percent of the
    submit path's CPU. A POST or DELETE answer is never cached, so it need not vary; GET and
    HEAD answers (docs, probes) still get the header, so a cache never serves one origin's
    answer to another.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] not in ("GET", "HEAD")
                and not any(name == b"origin" for name, _ in scope["headers"])):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    check_model_map(settings)  # a bad model map stops the gateway at start, saying what is wrong
    # The OCR languages the workers have: a submit asking for another is refused (422).
    languages = InstalledLanguages(ttl_seconds=settings.ocr_languages_ttl_seconds)
    # Redis near its maxmemory: submits are refused (web.redis_memory); read in the background.
    memory_guard = MemoryGuard(refuse_ratio=settings.redis_memory_refuse_ratio,
                               interval_seconds=settings.redis_memory_check_seconds)
    app = FastAPI(
        title="Offload gateway",
        version="1.0.0",
        description="Submit OCR, LLM and embedding jobs. Every job is stored and queued before the 202 answer; "
                    "follow it on the status service (Location header). The Files and Batches APIs are "
                    "OpenAI's: point the openai SDK's base_url at <gateway>/v1.",
        lifespan=lifespan_for(settings, maintenance=True,
                              background=[lambda app, services: memory_guard.run(services.store.redis),
                                          lambda app, services: languages.run(services.store.redis)]),
        telemetry=FASTAPI_TELEMETRY_OFF,
        **NO_CDN_DOCS,
    )
    install_api_docs(app)
    app.state.ocr_languages = languages
    install_problem_handlers(app)
    # Inside the observability middleware (added next), so refusals are counted and logged too.
    app.add_middleware(RequestLimits, max_connections=settings.http_max_connections, routes={
        ("POST", "/v1/jobs/llm"): RouteLimit(settings.max_json_body_bytes, admit=memory_guard.refusal),
        ("POST", "/v1/jobs/embed"): RouteLimit(settings.max_json_body_bytes, admit=memory_guard.refusal),
        ("POST", "/v1/jobs/ocr"): RouteLimit(settings.ocr_max_upload_bytes + FORM_OVERHEAD_BYTES,
                                             admit=memory_guard.refusal),
        ("POST", "/v1/files"): RouteLimit(settings.file_max_bytes + FORM_OVERHEAD_BYTES, admit=memory_guard.refusal),
        ("POST", "/v1/batches"): RouteLimit(64 * 1024, admit=memory_guard.refusal),
        ("POST", "/v1/pipelines"): RouteLimit(settings.ocr_max_upload_bytes + FORM_OVERHEAD_BYTES,
                                              admit=memory_guard.refusal),
    })
    install_observability(app, settings)
    add_routes(app, health_router, jobs_router, files_router, batches_router, pipelines_router, dead_letters_router)
    app.state.service_name = GATEWAY
    # The dashboard, served by the status service under whatever host name the user reached it
    # by (localhost, 127.0.0.1, the machine's name, an ingress), cancels and requeues jobs and
    # pipelines here, and reads batches and their files (GET, as the Batches API is the gateway's).
    # Any origin may call, without credentials: the API takes its key only from the
    # Authorization header, which a browser never adds by itself, and no cookie, client
    # certificate or source address grants anything. A page from another site can thus send
    # only what its own script holds, as curl could: no ambient authority for CORS to guard.
    app.add_middleware(BrowserOnlyCORS, allow_origins=["*"], allow_credentials=False,
                       allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"],
                       max_age=600)
    return app
