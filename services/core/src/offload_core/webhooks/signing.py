"""Webhook signatures: what Offload sends, and what a receiver checks.

Header: `X-Offload-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with
the tenant's webhook secret. `verify_signature` is what a receiver runs (with a tolerance
against replays).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from offload_core.settings import Settings

SIGNATURE_HEADER = "X-Offload-Signature"
# The same on every attempt of one delivery: a receiver deduplicates on it.
DELIVERY_HEADER = "X-Offload-Delivery"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS,
                     now: float | None = None) -> bool:
    """True if `header` signs `body` with `secret` and is no older than `tolerance` seconds."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


def secret_for(settings: Settings, tenant: str) -> str | None:
    pairs = dict(settings.webhook_secret_pairs)
    return pairs.get(tenant) or pairs.get("*")
