"""RFC 9457 problem details for every error an API returns.

Every 4xx and 5xx leaves the service as `application/problem+json` with a `detail` that tells
the client what to fix. Unexpected exceptions become a 500 problem that reveals nothing inside.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from offload_core.errors import StoreFull, StoreUnavailable
from offload_core.web.service_map import URL_SETTING, served_by

log = logging.getLogger("offload.http")

PROBLEM_JSON = "application/problem+json"
STORE_RETRY_AFTER_SECONDS = 5
STORE_FULL_RETRY_AFTER_SECONDS = 30  # a full Redis empties as workers drain it: not in 5 s
# Only what is true: a read changed nothing; a write may have been done by Redis before its
# answer was lost or came too late (a submit's script can run after the deadline fired).
STORE_DOWN_READ = "the job store cannot be reached right now; nothing was changed, try again shortly"
STORE_DOWN_WRITE = ("the job store did not confirm this change in time; it may or may not have been made: "
                    "look at the job before repeating it")
STORE_DOWN_SUBMIT = ("the job store did not confirm the job in time; it may or may not have been stored: "
                     "retry with the same Idempotency-Key, which returns the job if it was stored")
# Redis refuses a write at its maxmemory before it makes it, so here nothing was changed.
STORE_FULL = ("the job store is full (Redis reached its maxmemory) and refuses new data; nothing was "
              "changed: try again once workers have taken queued jobs (operators: raise the memory limit)")


class ProblemError(Exception):
    """Raise from a route to answer with a problem+json body."""

    def __init__(self, status: int, title: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(status: int, title: str, detail: str, *, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def store_unavailable(request: Request, detail: str) -> JSONResponse:
    return problem_response(503, "Service unavailable", detail, instance=request.url.path,
                            headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        errors.append({"field": loc, "message": err.get("msg", "invalid")})
    text = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
    return text or "the request is not valid", errors


def _unreadable_body(request: Request, exc: RequestValidationError) -> tuple[int, str, str] | None:
    """A body that could not be read as JSON at all: 400 for broken JSON, 415 for another media
    type. FastAPI reports both as a validation error of the whole body ("JSON decode error" at
    a bare character offset, or "Input should be a valid dictionary"), which names no cause."""
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            reason = (err.get("ctx") or {}).get("error") or "JSON decode error"
            return 400, "Malformed JSON body", f"the body is not valid JSON: {reason}{where}"
        if loc == ("body",) and err.get("type") == "model_attributes_type":
            media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if media_type != "application/json" and not media_type.endswith("+json"):
                sent = media_type or "no Content-Type"
                return 415, "Unsupported media type", f"send the body as application/json (got {sent})"
    return None


# What FastAPI says when reading the body failed before validation (the cause is chained).
FASTAPI_BODY_UNPARSED = "There was an error parsing the body"


def _unparsed_body_reason(cause: BaseException | None) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not valid UTF-8; JSON bodies must be UTF-8"
    if isinstance(cause, RecursionError):
        return "the body's JSON is nested too deeply"
    return "the body could not be read as JSON"


def _other_service(request: Request) -> tuple[str, str] | None:
    """(service, its public URL) when the request belongs to the other API service."""
    services = getattr(request.app.state, "services", None)
    own = getattr(request.app.state, "service_name", None)
    service = served_by(request.method, request.url.path)
    if services is None or service is None or service == own:
        return None
    return service, getattr(services.settings, URL_SETTING[service]).rstrip("/")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, instance=request.url.path,
                                headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if (refused := _unreadable_body(request, exc)) is not None:
            status, title, detail = refused
            return problem_response(status, title, detail, instance=request.url.path,
                                    errors=[{"field": "body", "message": detail}])
        detail, errors = _validation_detail(exc)
        return problem_response(422, "Invalid request", detail, instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 400 and detail == FASTAPI_BODY_UNPARSED:
            return problem_response(400, "Malformed JSON body", _unparsed_body_reason(exc.__cause__),
                                    instance=request.url.path)
        if exc.status_code in (404, 405) and (elsewhere := _other_service(request)) is not None:
            service, url = elsewhere
            return problem_response(exc.status_code, f"Served by the {service} service",
                                    f"{request.method} {request.url.path} is served by the {service} service: "
                                    f"send it to {url}{request.url.path}", instance=request.url.path,
                                    headers=getattr(exc, "headers", None), service=service, service_url=url)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}; see /docs for the API"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(exc.status_code, titles.get(exc.status_code, "Request refused"), detail,
                                instance=request.url.path, headers=getattr(exc, "headers", None))

    @app.exception_handler(StoreUnavailable)
    async def _store(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("job store unavailable: %s", exc)
        if isinstance(exc, StoreFull):
            return problem_response(503, "Service unavailable", STORE_FULL, instance=request.url.path,
                                    headers={"Retry-After": str(STORE_FULL_RETRY_AFTER_SECONDS)})
        return store_unavailable(request, STORE_DOWN_READ if request.method in ("GET", "HEAD") else STORE_DOWN_WRITE)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The client went away (or a limit cut its body off, web.limits): nobody reads this answer.
        return problem_response(400, "Client disconnected", "the request ended before its body was read",
                                instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal error", "the server failed to handle this request",
                                instance=request.url.path)
