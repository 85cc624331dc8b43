"""Embeddings from any OpenAI-compatible server: `POST {base_url}/embeddings`.

The retry policy is the LLM backend's (backends/retry_policy.py): 408, 429 and 5xx and transport
errors are tried again within the job, up to OFFLOAD_LLM_MAX_HTTP_ATTEMPTS, with full-jitter
backoff or the server's Retry-After; a wait longer than MAX_WAIT_IN_CALL_SECONDS hands the job
back to the runner (`RetryableJobError` with `retry_after`), so a worker slot is not held idle.
Other 4xx are the request's fault: the job fails. Vectors are asked for as floats (every server
speaks that) and encoded as the client asked by the handler. Thread-safe: one client per process.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from typing import Any, Callable

import httpx

from offload_core.embed.request import EmbedParams
from offload_core.errors import PermanentJobError, RetryableJobError
from offload_core.settings import Settings

from ..backends.base import Abortable, Checkpoint, never_aborted
from ..backends.openai_compat import MAX_WAIT_IN_CALL_SECONDS, WAIT_SLICE_SECONDS, _shut_down, error_detail
from ..backends.retry_policy import full_jitter_delay, is_retryable_status, parse_retry_after
from .base import Embedder, Embeddings

MAX_ANSWER_BYTES = 256 * 1024 * 1024  # 2048 inputs of 4096 floats as JSON fit well below this


class _TryAgain(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class OpenAIEmbedder(Embedder):
    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._settings = settings
        self._sleep = sleep
        self._base_url = (settings.embed_base_url or settings.llm_base_url).rstrip("/")
        self._api_key = settings.embed_api_key or settings.llm_api_key
        self._served = settings.embed_served_model or settings.embed_model
        self._client: httpx.Client | None = None
        self._client_pid = 0
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                s = self._settings
                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(
                    connect=s.llm_connect_timeout_seconds, read=s.llm_request_timeout_seconds,
                    write=s.llm_request_timeout_seconds, pool=s.llm_connect_timeout_seconds),
                    limits=httpx.Limits(max_connections=s.llm_max_in_flight,
                                        max_keepalive_connections=s.llm_max_in_flight))
                self._client_pid = os.getpid()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._client_pid == os.getpid():
                self._client.close()
            self._client = None

    def embed(self, params: EmbedParams, *, checkpoint: Checkpoint, abortable: Abortable = never_aborted) -> Embeddings:
        texts = params.texts()
        body: dict[str, Any] = {"model": self._served, "input": texts, "encoding_format": "float"}
        if params.dimensions is not None:
            body["dimensions"] = params.dimensions
        if params.input_type is not None:
            body["input_type"] = params.input_type
        if params.user is not None:
            body["user"] = params.user
        s = self._settings
        attempts = s.llm_max_http_attempts
        for attempt in range(1, attempts + 1):
            checkpoint()
            try:
                return self._once(body, len(texts), abortable)
            except _TryAgain as failure:
                if attempt == attempts:
                    raise RetryableJobError(f"the embeddings server failed {attempts} times; last: {failure.reason}",
                                            retry_after=failure.retry_after) from None
                delay = failure.retry_after
                if delay is None:
                    delay = full_jitter_delay(attempt, base=s.retry_backoff_base_seconds,
                                              cap=min(s.retry_backoff_max_seconds, MAX_WAIT_IN_CALL_SECONDS))
                if delay > MAX_WAIT_IN_CALL_SECONDS:
                    raise RetryableJobError(f"the embeddings server asked to wait {delay:.0f}s: {failure.reason}",
                                            retry_after=delay) from None
                remaining = delay
                while remaining > 0:
                    step = min(remaining, WAIT_SLICE_SECONDS)
                    self._sleep(step)
                    remaining -= step
                    checkpoint()
        raise AssertionError("unreachable: the loop returns or raises")

    def _once(self, body: dict[str, Any], count: int, abortable: Abortable) -> Embeddings:
        url = self._base_url + "/embeddings"
        try:
            with self._http().stream("POST", url, json=body) as response, abortable(lambda: _shut_down(response)):
                if response.status_code != 200:
                    detail = error_detail(response, secret=self._api_key)
                    if is_retryable_status(response.status_code):
                        raise _TryAgain(f"HTTP {response.status_code}: {detail}",
                                        parse_retry_after(response.headers.get("retry-after")))
                    raise PermanentJobError(f"the embeddings server refused the request "
                                            f"(HTTP {response.status_code}): {detail}")
                raw = bytearray()
                for part in response.iter_bytes():
                    raw += part
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise _TryAgain(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
        except httpx.TransportError as exc:
            raise _TryAgain(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
        return _parse(bytes(raw), count, self._served)


def _parse(raw: bytes, count: int, served: str) -> Embeddings:
    """OpenAI's answer, checked: one finite vector per input, all of one size."""
    try:
        answer = json.loads(raw)
        data = answer["data"]
        vectors: list[list[float] | None] = [None] * count
        for item in data:
            index = item["index"]
            vector = item["embedding"]
            if not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None:
                raise ValueError(f"an embedding has index {index!r}")
            if not isinstance(vector, list) or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in vector):
                raise ValueError("an embedding is not a list of finite numbers")
            vectors[index] = [float(x) for x in vector]
        if any(v is None for v in vectors) or len({len(v) for v in vectors if v is not None}) != 1:
            raise ValueError(f"{count} inputs, but not one vector of one size each")
        usage = answer.get("usage") or {}
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        model = answer.get("model") if isinstance(answer.get("model"), str) and answer.get("model") else served
    except (ValueError, KeyError, TypeError) as exc:
        # A server that answers nonsense may be restarting or overloaded: try again later.
        raise _TryAgain(f"the embeddings server's answer is not OpenAI's embeddings object ({exc})") from None
    return Embeddings(vectors=vectors,  # type: ignore[arg-type]  (no None left: checked above)
                      prompt_tokens=tokens if isinstance(tokens, int) and tokens >= 0 else 0, model=model)
