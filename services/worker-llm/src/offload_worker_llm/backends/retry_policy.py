"""When to retry an HTTP call to the LLM server, and how long to wait first."""

from __future__ import annotations

import email.utils
import math
import random
from datetime import datetime, timezone
from typing import Callable

# 408 and 429 say "not now", 5xx say "not my fault": all may succeed on a later try. Every other
# 4xx means the request itself is wrong and will be refused again.
RETRYABLE_STATUS = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or HTTP-date); None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        # RFC 9110 says a whole number; decimals from lenient servers are taken as meant.
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def full_jitter_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))).

    Full jitter spreads the retries of many workers that failed together, so they do not hit a
    recovering server in waves.
    """
    return rand() * min(cap, base * 2 ** (attempt - 1))
