"""Backend for any OpenAI-compatible server: streamed `POST {base_url}/chat/completions`.

Thread-safe: one process streams up to OFFLOAD_LLM_MAX_IN_FLIGHT answers at once, a thread each,
over one connection pool per model route (as many connections as streams). Under the hard time
limit, the runner may end a stream from another thread: the stream's socket is shut down, so
its blocked read returns at once (a request whose answer has not started yet ends at its read
timeout, OFFLOAD_LLM_REQUEST_TIMEOUT_SECONDS; its outcome is recorded at the limit all the same).

Retries happen here only while nothing has been streamed yet: once a client may have seen
tokens, a silent retry would make it see a second, different answer. After output has started,
a broken stream becomes `RetryableJobError` and the runner re-runs the job from the beginning.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any, Callable

import httpx

from offload_core.errors import PermanentJobError, RetryableJobError
from offload_core.llm.models import ModelRoute
from offload_core.llm.request import LlmParams
from offload_core.settings import Settings

from .base import Abortable, Checkpoint, LlmBackend, LlmResult, LlmUsage, OnToken, check_request_limits, never_aborted, route_of
from .retry_policy import full_jitter_delay, is_retryable_status, parse_retry_after
from .sse import iter_sse_data

# Waiting longer than this inside one job keeps a worker slot idle; beyond it the job is handed
# back to the runner with `retry_after`, and the slot serves other jobs meanwhile.
MAX_WAIT_IN_CALL_SECONDS = 30.0
# Cancellation is checked at least this often while waiting to retry.
WAIT_SLICE_SECONDS = 0.5
ERROR_BODY_MAX_BYTES = 8192
ERROR_DETAIL_MAX_CHARS = 300


class _NotYetStreamed(Exception):
    """A transient failure before any token was handed out: safe to try the request again."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class OpenAICompatBackend(LlmBackend):
    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._settings = settings
        self._sleep = sleep
        self._clients: dict[str, httpx.Client] = {}  # by route name
        self._client_pid: int | None = None
        self._client_lock = threading.Lock()

    def _http(self, route: ModelRoute) -> httpx.Client:
        # One client per route per process, made on first use: connections are reused across
        # jobs, and a client inherited through fork would share its sockets with the parent.
        with self._client_lock:
            if self._client_pid != os.getpid():
                self._clients, self._client_pid = {}, os.getpid()
            client = self._clients.get(route.name)
            if client is None:
                headers = {"Accept": "text/event-stream"}
                api_key = route.api_key  # read here: a Secret mounted as a file, or a variable
                if api_key:
                    headers["Authorization"] = f"Bearer {api_key}"
                streams = self._settings.llm_max_in_flight
                client = self._clients[route.name] = httpx.Client(
                    headers=headers,
                    # `read` bounds the silence between two streamed chunks, not the whole answer;
                    # the job's time limits bound that.
                    timeout=httpx.Timeout(
                        connect=route.connect_timeout_seconds,
                        read=route.request_timeout_seconds,
                        write=route.request_timeout_seconds,
                        pool=route.connect_timeout_seconds,
                    ),
                    # A connection per stream in flight, kept for the next jobs.
                    limits=httpx.Limits(max_connections=streams, max_keepalive_connections=streams),
                )
            return client

    def close(self) -> None:
        with self._client_lock:
            if self._client_pid == os.getpid():
                for client in self._clients.values():
                    client.close()
            self._clients = {}

    def generate(self, params: LlmParams, route: ModelRoute | None = None, *, on_token: OnToken,
                 checkpoint: Checkpoint, abortable: Abortable = never_aborted) -> LlmResult:
        route = route or route_of(params, self._settings)
        check_request_limits(params, self._settings)
        body = {
            "model": route.served_model,
            "messages": params.chat_messages(),
            "max_tokens": params.max_tokens,
            **params.sampling(),
            "stream": True,
            # Servers that know this option end the stream with a usage chunk; others ignore it.
            "stream_options": {"include_usage": True},
        }
        s = self._settings
        attempts = s.llm_max_http_attempts
        for attempt in range(1, attempts + 1):
            checkpoint()
            try:
                return self._stream_once(route, body, on_token, checkpoint, abortable)
            except _NotYetStreamed as failure:
                if attempt == attempts:
                    raise RetryableJobError(
                        f"the LLM server failed {attempts} times; last: {failure.reason}",
                        retry_after=failure.retry_after,
                    ) from None
                delay = failure.retry_after
                if delay is None:
                    delay = full_jitter_delay(
                        attempt,
                        base=s.retry_backoff_base_seconds,
                        cap=min(s.retry_backoff_max_seconds, MAX_WAIT_IN_CALL_SECONDS),
                    )
                if delay > MAX_WAIT_IN_CALL_SECONDS:
                    raise RetryableJobError(
                        f"the LLM server asked to wait {delay:.0f}s: {failure.reason}", retry_after=delay
                    ) from None
                self._wait(delay, checkpoint)
        raise AssertionError("unreachable: the loop returns or raises")

    def _wait(self, seconds: float, checkpoint: Checkpoint) -> None:
        remaining = seconds
        while remaining > 0:
            step = min(remaining, WAIT_SLICE_SECONDS)
            self._sleep(step)
            remaining -= step
            checkpoint()

    def _stream_once(self, route: ModelRoute, body: dict[str, Any], on_token: OnToken, checkpoint: Checkpoint,
                     abortable: Abortable) -> LlmResult:
        stream = _StreamState(requested_model=route.served_model)
        url = route.base_url + "/chat/completions"
        try:
            with self._http(route).stream("POST", url, json=body) as response, \
                    abortable(lambda: _shut_down(response)):
                if response.status_code != 200:
                    self._raise_for_status(response, route)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise PermanentJobError(
                        f"the LLM server answered {content_type or 'without a content type'} instead of "
                        "an event stream; it must support streaming (stream=true)"
                    )
                for data in iter_sse_data(response.iter_lines()):
                    if stream.done:
                        # Read to the end anyway: a fully read response returns its connection
                        # to the pool, a half-read one is closed.
                        continue
                    if data.strip() == "[DONE]":
                        stream.done = True
                        continue
                    piece = stream.add(_parse_chunk(data))
                    if piece:
                        checkpoint()
                        on_token(piece)
                        stream.emitted = True
        except httpx.TransportError as exc:
            # Once the finish reason is in, the answer is whole; only a trailing usage chunk or
            # the [DONE] marker can be lost, and that is no reason to run the job again.
            if not stream.complete:
                stream.fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        except _BadChunk as exc:
            if not stream.complete:
                stream.fail(str(exc))
        if not stream.complete:
            stream.fail("the stream ended before the answer was complete")
        return stream.result()

    def _raise_for_status(self, response: httpx.Response, route: ModelRoute) -> None:
        status = response.status_code
        detail = error_detail(response, secret=route.api_key)
        if is_retryable_status(status):
            raise _NotYetStreamed(
                f"HTTP {status}: {detail}", retry_after=parse_retry_after(response.headers.get("retry-after"))
            )
        raise PermanentJobError(f"the LLM server refused the request (HTTP {status}): {detail}")


def _shut_down(response: httpx.Response) -> None:
    """End a stream from another thread: shut its socket down, so the read blocked on it returns."""
    network = response.extensions.get("network_stream")
    sock = network.get_extra_info("socket") if network is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


class _BadChunk(Exception):
    """A stream chunk that is not the JSON an OpenAI-compatible server sends."""


def _parse_chunk(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise _BadChunk(f"the LLM server sent a malformed stream chunk: {data[:80]!r}") from None
    if not isinstance(chunk, dict):
        raise _BadChunk("the LLM server sent a stream chunk that is not a JSON object")
    if "error" in chunk:
        raise _BadChunk(f"the LLM server reported an error mid-stream: {_message_of(chunk)}")
    return chunk


class _StreamState:
    """What one streamed answer has delivered so far."""

    def __init__(self, requested_model: str) -> None:
        self.model = requested_model
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage = LlmUsage()
        self.done = False
        self.emitted = False

    def add(self, chunk: dict[str, Any]) -> str:
        """Take in one chunk; return its new text (possibly empty)."""
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = LlmUsage(
                prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
                completion_tokens=_int_or_none(usage.get("completion_tokens")),
                total_tokens=_int_or_none(usage.get("total_tokens")),
            )
        piece = ""
        for choice in chunk.get("choices") or []:
            # We ask for one choice (n defaults to 1); a server sending more would be answering a
            # request we did not make, so only choice 0 is read.
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                piece += content
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        if piece:
            self.parts.append(piece)
        return piece

    @property
    def complete(self) -> bool:
        return self.done or self.finish_reason is not None

    def fail(self, reason: str) -> None:
        if self.emitted:
            raise RetryableJobError(f"the LLM stream broke after output had started: {reason}")
        raise _NotYetStreamed(reason)

    def result(self) -> LlmResult:
        # Without a usage chunk (servers that ignore stream_options, like llama_cpp.server) the
        # prompt count stays None; completion tokens are the streamed content chunks, and the
        # usage says so.
        usage = self.usage
        if usage.completion_tokens is None and self.parts:
            usage = LlmUsage(prompt_tokens=usage.prompt_tokens, completion_tokens=len(self.parts),
                             total_tokens=None, source="stream_chunks")
        return LlmResult(text="".join(self.parts), finish_reason=self.finish_reason, usage=usage, model=self.model)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def error_detail(response: httpx.Response, *, secret: str) -> str:
    """The server's own error message, short and free of our credentials, for the job's error."""
    raw = b""
    for part in response.iter_bytes():
        raw += part
        if len(raw) >= ERROR_BODY_MAX_BYTES:
            break
    text = raw[:ERROR_BODY_MAX_BYTES].decode("utf-8", errors="replace")
    try:
        message = _message_of(json.loads(text))
    except json.JSONDecodeError:
        message = text
    message = " ".join(message.split()) or response.reason_phrase or "no message"
    if secret:
        message = message.replace(secret, "[redacted]")
    if len(message) > ERROR_DETAIL_MAX_CHARS:
        message = message[: ERROR_DETAIL_MAX_CHARS - 1] + "…"
    return message


def _message_of(payload: object) -> str:
    """Find the message in the error shapes servers use: OpenAI's, FastAPI's, or a bare one."""
    if isinstance(payload, dict):
        for key in ("error", "detail", "message"):
            value = payload.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"]
            if value is not None:
                return json.dumps(value)[:ERROR_DETAIL_MAX_CHARS]
    return json.dumps(payload)[:ERROR_DETAIL_MAX_CHARS]
