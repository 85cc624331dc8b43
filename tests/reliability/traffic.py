"""Submitting many jobs at once from a few client threads, keeping every answer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.platform import Platform


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer (transport error or timeout)
    job_id: str | None
    retry_after: str | None
    content_type: str
    error: str | None = None


def _answer(r: httpx.Response) -> Answer:
    body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
    return Answer(r.status_code, body.get("id") if r.status_code in (200, 202) else None,
                  r.headers.get("retry-after"), r.headers.get("content-type", ""))


class Submitter:
    """One pooled HTTP client per thread, talking to one platform's gateway."""

    def __init__(self, platform: Platform, *, timeout: float = 30) -> None:
        self.platform, self.timeout = platform, timeout
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(base_url=self.platform.gateway.url, timeout=self.timeout)
        return client

    def llm(self, body: dict[str, Any], tenant: str = "alice", **headers: str) -> Answer:
        try:
            return _answer(self._client().post("/v1/jobs/llm", json=body,
                                               headers=self.platform.headers(tenant, **headers)))
        except httpx.HTTPError as exc:
            return Answer(0, None, None, "", error=f"{type(exc).__name__}: {exc}")

    def ocr(self, data: bytes, filename: str = "doc.png", tenant: str = "alice",
            fields: dict[str, str] | None = None) -> Answer:
        try:
            return _answer(self._client().post("/v1/jobs/ocr", files={"file": (filename, data, "application/octet-stream")},
                                               data=fields or {}, headers=self.platform.headers(tenant)))
        except httpx.HTTPError as exc:
            return Answer(0, None, None, "", error=f"{type(exc).__name__}: {exc}")


def in_parallel(calls: list[Callable[[], Answer]], threads: int = 4) -> list[Answer]:
    """Run the calls on a few threads; answers come back in the order of `calls`."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda call: call(), calls))
