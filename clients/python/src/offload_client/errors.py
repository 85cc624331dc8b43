"""Every error the client raises, one tree:

    OffloadError
    ├── TransportError          the service could not be reached (connection, timeout, cut stream)
    ├── ApiError                the service answered with a problem+json error (RFC 9457)
    │   ├── InvalidRequestError     400, 413, 415, 422: fix the request
    │   ├── AuthenticationError     401: the API key is missing or wrong
    │   ├── NotFoundError           404: no such job for this key's tenant
    │   ├── ConflictError           409: the job's state does not allow it, or an idempotency clash
    │   ├── RateLimitedError        429: still refused after the client's retries
    │   └── ServiceUnavailableError 5xx: still failing after the client's retries
    └── WaitTimeout             wait() gave up before the job finished (also a TimeoutError)

`ApiError` carries the problem fields (`status`, `title`, `detail`, `type`, `instance`) plus any
extra members the service sent (`extra`, e.g. `job_id` on an idempotency conflict, `state`).
"""

from __future__ import annotations

from typing import Any

import httpx


class OffloadError(Exception):
    """Base class of every error this package raises."""


class TransportError(OffloadError):
    """The request did not get an answer: connection refused, timeout, or the stream was cut."""


class ApiError(OffloadError):
    def __init__(self, status: int, title: str, detail: str, *, type: str = "about:blank",  # noqa: A002
                 instance: str | None = None, extra: dict[str, Any] | None = None,
                 retry_after: float | None = None, url: str | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        self.type, self.instance = type, instance
        self.extra = extra or {}
        self.retry_after = retry_after
        self.url = url  # the request's URL: which service answered


class InvalidRequestError(ApiError):
    pass


class AuthenticationError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    pass


class RateLimitedError(ApiError):
    pass


class ServiceUnavailableError(ApiError):
    pass


class WaitTimeout(OffloadError, TimeoutError):
    def __init__(self, job_id: str, timeout: float, last_state: str | None, *, what: str = "job") -> None:
        super().__init__(f"{what} {job_id} did not finish within {timeout}s (last state: {last_state or 'unknown'})")
        self.job_id, self.timeout, self.last_state = job_id, timeout, last_state


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequestError, 413: InvalidRequestError, 415: InvalidRequestError, 422: InvalidRequestError,
    401: AuthenticationError, 403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
}
_PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance"}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for an error response; works for bodies that are not problem+json too."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": (response.text or "").strip()[:500] or response.reason_phrase}
    cls = _BY_STATUS.get(status) or (ServiceUnavailableError if status >= 500 else ApiError)
    return cls(
        status,
        str(body.get("title") or response.reason_phrase or "Error"),
        str(body.get("detail") or ""),
        type=str(body.get("type") or "about:blank"),
        instance=body.get("instance"),
        extra={k: v for k, v in body.items() if k not in _PROBLEM_MEMBERS},
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        url=str(response.request.url) if response._request is not None else None,
    )
