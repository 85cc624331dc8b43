"""Where the services are, which key to send, and how hard to retry.

`ClientConfig.resolve()` reads `OFFLOAD_URL` (gateway), `OFFLOAD_STATUS_URL` and `OFFLOAD_API_KEY`
for whatever the caller did not pass. The status URL defaults to the gateway URL when only that
one is set (one host in front of both), and to `make run`'s http://localhost:8001 when neither is.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

DEFAULT_GATEWAY_URL = "http://localhost:8000"
DEFAULT_STATUS_URL = "http://localhost:8001"


class ConfigError(ValueError):
    """The client cannot be built as configured (e.g. no API key)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a refused (429) or unavailable (503) request, and of a connection that failed.

    The wait is the server's `Retry-After` when it sent one, else exponential backoff with
    jitter. A `Retry-After` longer than `max_delay` is not slept through: the error is raised at
    once so the caller can decide (it carries `retry_after`).
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_delay else None
        return min(self.max_delay, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class ClientConfig:
    gateway_url: str
    status_url: str
    api_key: str = field(repr=False)
    timeout: float = 30.0
    retry: RetryPolicy = RetryPolicy()
    # A live event stream with no bytes for this long (the service sends a keepalive every
    # ~15 s) is treated as cut, and resumed.
    stream_idle_timeout: float = 60.0
    # Give up following events after this many reconnects in a row that brought nothing new.
    max_stream_reconnects: int = 5
    # Where `status_url` came from, for messages: "given", "OFFLOAD_STATUS_URL", "the gateway
    # URL" (only that one was set) or "the default".
    status_url_from: str = field(default="given", compare=False)

    @classmethod
    def resolve(cls, gateway_url: str | None = None, *, status_url: str | None = None,
                api_key: str | None = None, **options: object) -> "ClientConfig":
        gateway = gateway_url or os.environ.get("OFFLOAD_URL") or None
        status = status_url or os.environ.get("OFFLOAD_STATUS_URL") or gateway or DEFAULT_STATUS_URL
        source = ("given" if status_url else "OFFLOAD_STATUS_URL" if os.environ.get("OFFLOAD_STATUS_URL")
                  else "the gateway URL" if gateway else "the default")
        options.setdefault("status_url_from", source)
        key = api_key if api_key is not None else os.environ.get("OFFLOAD_API_KEY", "")
        if not key.strip():
            raise ConfigError("no API key: pass api_key= (CLI: --api-key) or set OFFLOAD_API_KEY")
        return cls(gateway_url=(gateway or DEFAULT_GATEWAY_URL).rstrip("/"), status_url=status.rstrip("/"),
                   api_key=key.strip(), **options)  # type: ignore[arg-type]
