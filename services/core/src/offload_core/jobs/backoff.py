"""How long a job (or a webhook delivery) waits before its next attempt."""

from __future__ import annotations

import random

from offload_core.settings import Settings


def backoff_seconds(settings: Settings, attempt: int, asked: float | None = None) -> float:
    """Exponential backoff with equal jitter, at least what the remote side asked for."""
    cap = settings.retry_backoff_max_seconds
    ceiling = min(cap, settings.retry_backoff_base_seconds * (2 ** max(0, attempt - 1)))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if asked:
        delay = max(delay, min(asked, cap))
    return delay
