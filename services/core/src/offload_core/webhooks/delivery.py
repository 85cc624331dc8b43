"""Sending one webhook: the job's summary POSTed to its `callback_url`, signed
(offload_core.webhooks.signing), within one deadline for the whole exchange.

The URL is resolved and checked first (offload_core.webhooks.urlguard): it never goes to an
internal address, and the request goes to the address that was checked, not to a second DNS
answer. Redirects are not followed. The delivery id (`X-Offload-Delivery`) is the same on every
attempt of one delivery: receivers deduplicate on it, since a delivery is at least once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx

from offload_core.webhooks.signing import DELIVERY_HEADER, SIGNATURE_HEADER, sign
from offload_core.webhooks.urlguard import Allowlist, UrlRefused, resolve_public

USER_AGENT = "offload-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt came to."""

    delivered: bool
    retryable: bool
    status: int | None = None  # the receiver's HTTP status, when it answered
    retry_after: float | None = None  # seconds it asked us to wait (429/503)
    detail: str | None = None


def body_for(event: str, summary: dict[str, Any]) -> bytes:
    return json.dumps({"event": event, "job": summary}, separators=(",", ":")).encode()


async def post_signed(client: httpx.AsyncClient, url: str, body: bytes, *, secret: str, delivery_id: str,
                      allow: Allowlist, timeout: float) -> Attempt:
    """POST `body` to `url` within `timeout` seconds in all (resolution, connection, upload and
    the whole answer); a receiver that drips its answer is cut at the deadline."""
    try:
        async with asyncio.timeout(timeout):
            address = await anyio.to_thread.run_sync(resolve_public, url, allow)
            parts = urlsplit(url)
            pinned = f"[{address}]" if ":" in address else address
            target = urlunsplit(parts._replace(netloc=f"{pinned}:{parts.port}" if parts.port else pinned))
            headers = {
                "Host": parts.netloc.rpartition("@")[2],
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: sign(secret, body),
                DELIVERY_HEADER: delivery_id,
            }
            extensions = {"sni_hostname": parts.hostname or ""} if parts.scheme == "https" else {}
            response = await client.post(target, content=body, headers=headers, extensions=extensions)
    except UrlRefused as exc:
        return Attempt(False, retryable=False, detail=str(exc))
    except TimeoutError:
        return Attempt(False, retryable=True, detail=f"no complete answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Attempt(False, retryable=True, detail=f"{type(exc).__name__}: could not reach the callback URL")
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(True, retryable=False, status=status)
    asked = response.headers.get("retry-after")
    retry_after = float(asked) if asked and asked.isdigit() else None
    if 300 <= status < 400:
        return Attempt(False, retryable=False, status=status,
                       detail=f"the callback answered {status}; redirects are not followed")
    return Attempt(False, retryable=status == 429 or status >= 500, status=status, retry_after=retry_after,
                   detail=f"the callback answered {status}")
