"""The S3 payload store: payloads in a bucket of any S3-compatible server, over HTTP.

The gateway `put`s an upload (async, streamed from its spool file in chunks: the body is never
read into memory again) and the workers `get` it (sync, checked against the size and SHA-256
the record keeps). Both `delete` (the job ended; a missing object is fine).

Every request is signed with SigV4 (`sigv4.py`) and carries the payload's SHA-256 twice: signed
as `x-amz-content-sha256`, and as `x-amz-checksum-sha256`, which S3 and compatible servers check
against what they received before storing anything. Each call makes at most
`OFFLOAD_S3_MAX_ATTEMPTS` attempts, retrying transport errors, 5xx and 429 with backoff, each
attempt bounded by the connect and read timeouts; connections per client are bounded too.

A worker's get: missing object -> `PayloadMissing` (permanent), other bytes than the record says
-> `PayloadCorrupt` (permanent), no answer, 5xx or a refusal -> `PayloadUnavailable` (retryable,
and a 503 for the APIs).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import httpx

from offload_core.payloads import metrics
from offload_core.payloads.errors import PayloadCorrupt, PayloadMissing, PayloadUnavailable
from offload_core.payloads.ref import PayloadRef
from offload_core.payloads.sigv4 import EMPTY_SHA256, Signer, uri_encode
from offload_core.process_local import PerProcess
from offload_core.settings import Settings

STORE = "s3"
CHUNK_BYTES = 256 * 1024
MAX_CONNECTIONS = 16  # per client: the gateway's event loop, or one worker process
ERROR_BODY_LIMIT = 16 * 1024  # an error answer is a small XML document; we read no more
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class PayloadSource(Protocol):
    """Bytes that can be read from the start as often as needed (each attempt reopens them),
    with their size and SHA-256 known in advance. `SpooledPayload` is one."""

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str: ...

    def open(self) -> BinaryIO: ...


@dataclass(frozen=True)
class BytesSource:
    data: bytes
    size: int = field(init=False)
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", len(self.data))
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)


def goes_to_s3(settings: Settings, size: int) -> bool:
    """Whether a payload of `size` bytes is stored in S3 (else inline in the job record)."""
    return settings.payload_store == "s3" and size >= settings.payload_s3_threshold_bytes


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str
    bucket: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    prefix: str = "offload/payloads/"
    region: str = "us-east-1"
    addressing: Literal["path", "virtual"] = "path"
    ca_file: Path | None = None
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    max_attempts: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3Config":
        key_id, secret = settings.s3_credentials
        return cls(endpoint_url=settings.s3_endpoint_url, bucket=settings.s3_bucket, access_key_id=key_id,
                   secret_access_key=secret, prefix=settings.s3_prefix, region=settings.s3_region,
                   addressing=settings.s3_addressing, ca_file=settings.s3_ca_file,
                   connect_timeout_seconds=settings.s3_connect_timeout_seconds,
                   read_timeout_seconds=settings.s3_read_timeout_seconds, max_attempts=settings.s3_max_attempts)


def _error_code(body: bytes) -> str:
    """The `<Code>` of an S3 error document ("NoSuchKey", "AccessDenied", ...), or ""."""
    match = re.search(rb"<Code>([A-Za-z0-9.]{1,64})</Code>", body)
    return match.group(1).decode() if match else ""


def _backoff(attempt: int) -> float:
    return min(2.0, 0.2 * 2 ** attempt) * random.uniform(0.5, 1.0)


class _Failure(Exception):
    """One failed attempt: why, and whether another attempt may succeed."""

    def __init__(self, reason: str, *, retry: bool, status: int = 0, code: str = "") -> None:
        super().__init__(reason)
        self.reason, self.retry, self.status, self.code = reason, retry, status, code


def _failure_of(response: httpx.Response, body: bytes) -> _Failure:
    code = _error_code(body)
    what = f"HTTP {response.status_code}" + (f" {code}" if code else "")
    return _Failure(what, retry=response.status_code in RETRY_STATUSES or response.status_code >= 500,
                    status=response.status_code, code=code)


def _transport_failure(exc: httpx.TransportError) -> _Failure:
    detail = str(exc)
    return _Failure(type(exc).__name__ + (f" ({detail})" if detail else ""), retry=True)


class S3PayloadStore:
    """One bucket of one S3-compatible server. Safe to make before a fork: each process opens its
    own connections on first use."""

    name = STORE

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._signer = Signer(config.access_key_id, config.secret_access_key, config.region)
        endpoint = httpx.URL(config.endpoint_url)
        self._scheme = endpoint.scheme
        self._host = endpoint.host
        self._port = endpoint.port  # None when it is the scheme's default
        self._base_path = endpoint.path.rstrip("/")
        self._sync = PerProcess(lambda: httpx.Client(**self._client_options()))
        self._async: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3PayloadStore":
        return cls(S3Config.from_settings(settings))

    def __repr__(self) -> str:
        return f"S3PayloadStore(endpoint={self.config.endpoint_url!r}, bucket={self.config.bucket!r})"

    def key_for(self, job_id: str) -> str:
        """The object key of a job's payload: the prefix, then the job id."""
        return f"{self.config.prefix}{job_id}"

    # ------------------------------------------------------------------ requests

    def _client_options(self) -> dict:
        c = self.config
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(c.ca_file)) if c.ca_file else True
        return {
            "timeout": httpx.Timeout(connect=c.connect_timeout_seconds, read=c.read_timeout_seconds,
                                     write=c.read_timeout_seconds, pool=c.connect_timeout_seconds),
            "limits": httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
            "verify": verify,
            "follow_redirects": False,
        }

    def _request(self, method: str, bucket: str, key: str, payload_sha256: str,
                 headers: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
        """The URL and signed headers of one request (signed anew for every attempt: the
        signature carries the time)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        if self.config.addressing == "virtual":
            host = f"{bucket}.{host}"
            path = f"{self._base_path}/{key}"
        else:
            path = f"{self._base_path}/{bucket}/{key}"
        host_header = host if self._port is None else f"{host}:{self._port}"
        signed = self._signer.sign(method, host_header, path, {}, headers or {}, payload_sha256)
        return f"{self._scheme}://{host_header}{uri_encode(path, keep_slash=True)}", signed

    def _async_client(self) -> httpx.AsyncClient:
        # One per event loop: a client's connections belong to the loop that opened them.
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            self._async, self._async_loop = httpx.AsyncClient(**self._client_options()), loop
        return self._async

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def close(self) -> None:
        self._sync.get().close()

    def _give_up(self, operation: str, failure: _Failure, attempts: int) -> PayloadUnavailable:
        metrics.failed(STORE, operation, "refused" if failure.status and not failure.retry else "unavailable")
        if failure.status in (401, 403) or failure.code == "NoSuchBucket":
            hint = "the operator must check the payload store's bucket and credentials (OFFLOAD_S3_*)"
        else:
            hint = "it will be tried again"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return PayloadUnavailable(f"object storage failed to {operation} the job's input: {failure.reason}{tries}; "
                                  f"{hint}")

    # ------------------------------------------------------------------ put (gateway)

    async def put(self, key: str, source: PayloadSource | bytes) -> PayloadRef:
        """Store `source` under `key` and return the reference the job record keeps. The body is
        streamed from `source.open()` in chunks; the server refuses it unless it has exactly
        the size and SHA-256 announced. `PayloadUnavailable` when it cannot be stored."""
        src: PayloadSource = BytesSource(source) if isinstance(source, (bytes, bytearray)) else source
        headers = {
            "content-type": "application/octet-stream",
            "x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(src.sha256)).decode(),
        }
        client = self._async_client()
        started = time.monotonic()
        for attempt in range(self.config.max_attempts):
            url, signed = self._request("PUT", self.config.bucket, key, src.sha256, headers)
            signed["content-length"] = str(src.size)  # not signed: httpx must not send it chunked
            try:
                with src.open() as body:
                    response = await client.request("PUT", url, headers=signed, content=_chunks(body))
                failure = None if response.status_code == 200 else _failure_of(response, response.content[:ERROR_BODY_LIMIT])
            except httpx.TransportError as exc:
                failure = _transport_failure(exc)
            if failure is None:
                metrics.done(STORE, "put", src.size, time.monotonic() - started)
                return PayloadRef(store=STORE, bucket=self.config.bucket, key=key, sha256=src.sha256, size=src.size)
            if not failure.retry or attempt + 1 == self.config.max_attempts:
                raise self._give_up("store", failure, attempt + 1)
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ get (workers)

    def get(self, ref: PayloadRef) -> bytes:
        """The payload `ref` names, checked against its size and SHA-256 as it is read (never
        more than `ref.size` bytes are held)."""
        client = self._sync.get()
        started = time.monotonic()
        for attempt in range(self.config.max_attempts):
            url, signed = self._request("GET", ref.bucket, ref.key, EMPTY_SHA256)
            try:
                with client.stream("GET", url, headers=signed) as response:
                    if response.status_code == 200:
                        data = _read_checked(response.iter_bytes(CHUNK_BYTES), ref)
                        metrics.done(STORE, "get", ref.size, time.monotonic() - started)
                        return data
                    failure = _failure_of(response, _read_some(response.iter_bytes()))
            except httpx.TransportError as exc:
                failure = _transport_failure(exc)
            except PayloadCorrupt:
                metrics.failed(STORE, "get", "corrupt")
                raise
            if failure.status == 404 and failure.code in ("NoSuchKey", ""):
                metrics.failed(STORE, "get", "missing")
                raise PayloadMissing(f"the job's input is not in object storage any more (object {ref.key!r} not "
                                     "found): it was deleted or expired before the job ran; submit it again")
            if not failure.retry or attempt + 1 == self.config.max_attempts:
                raise self._give_up("read", failure, attempt + 1)
            time.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ reads (the APIs: files)

    async def aget_range(self, ref: PayloadRef, start: int, length: int) -> bytes:
        """`length` bytes of the object from `start` (fewer at its end): a batch file read in
        windows. `PayloadMissing` when the object is gone, `PayloadUnavailable` when the store is."""
        if length <= 0 or start >= ref.size:
            return b""
        end = min(ref.size, start + length) - 1
        client = self._async_client()
        for attempt in range(self.config.max_attempts):
            url, signed = self._request("GET", ref.bucket, ref.key, EMPTY_SHA256)
            signed["range"] = f"bytes={start}-{end}"  # not signed: S3 does not ask for it
            try:
                response = await client.request("GET", url, headers=signed)
                if response.status_code in (200, 206):
                    body = response.content
                    return body[start:end + 1] if response.status_code == 200 else body
                failure = _failure_of(response, response.content[:ERROR_BODY_LIMIT])
            except httpx.TransportError as exc:
                failure = _transport_failure(exc)
            if failure.status == 404 and failure.code in ("NoSuchKey", ""):
                raise PayloadMissing(f"object {ref.key!r} is not in object storage any more")
            if not failure.retry or attempt + 1 == self.config.max_attempts:
                raise self._give_up("read", failure, attempt + 1)
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    async def astream(self, ref: PayloadRef) -> AsyncIterator[bytes]:
        """The object in chunks of about CHUNK_BYTES, each read when the caller asks for it (a
        download streamed to a client): in windows, so a dropped connection costs one window."""
        position = 0
        while position < ref.size:
            chunk = await self.aget_range(ref, position, CHUNK_BYTES * 4)
            if not chunk:
                raise PayloadCorrupt(f"object {ref.key!r} is shorter than the {ref.size} bytes stored")
            position += len(chunk)
            yield chunk

    # ------------------------------------------------------------------ delete (both)

    def delete(self, ref: PayloadRef) -> None:
        """Delete the object; one that is already gone is fine. `PayloadUnavailable` otherwise
        (callers log it: the bucket's lifecycle rule removes what a failed delete leaves)."""
        client = self._sync.get()
        started = time.monotonic()
        for attempt in range(self.config.max_attempts):
            url, signed = self._request("DELETE", ref.bucket, ref.key, EMPTY_SHA256)
            try:
                response = client.request("DELETE", url, headers=signed)
                failure = _delete_failure(response)
            except httpx.TransportError as exc:
                failure = _transport_failure(exc)
            if failure is None:
                metrics.done(STORE, "delete", ref.size, time.monotonic() - started)
                return
            if not failure.retry or attempt + 1 == self.config.max_attempts:
                raise self._give_up("delete", failure, attempt + 1)
            time.sleep(_backoff(attempt))

    async def adelete(self, ref: PayloadRef) -> None:
        """`delete` for the APIs' event loop."""
        client = self._async_client()
        started = time.monotonic()
        for attempt in range(self.config.max_attempts):
            url, signed = self._request("DELETE", ref.bucket, ref.key, EMPTY_SHA256)
            try:
                response = await client.request("DELETE", url, headers=signed)
                failure = _delete_failure(response)
            except httpx.TransportError as exc:
                failure = _transport_failure(exc)
            if failure is None:
                metrics.done(STORE, "delete", ref.size, time.monotonic() - started)
                return
            if not failure.retry or attempt + 1 == self.config.max_attempts:
                raise self._give_up("delete", failure, attempt + 1)
            await asyncio.sleep(_backoff(attempt))


def _delete_failure(response: httpx.Response) -> _Failure | None:
    if response.status_code in (200, 204):
        return None
    failure = _failure_of(response, response.content[:ERROR_BODY_LIMIT])
    # S3 answers 204 for a missing key; some servers 404 NoSuchKey. Either way it is gone.
    return None if failure.status == 404 and failure.code in ("NoSuchKey", "") else failure


async def _chunks(body: BinaryIO) -> AsyncIterator[bytes]:
    """The body in chunks; reads from a real file happen off the event loop."""
    on_disk = not isinstance(body, io.BytesIO)
    while True:
        chunk = await asyncio.to_thread(body.read, CHUNK_BYTES) if on_disk else body.read(CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def _read_some(chunks: Iterator[bytes]) -> bytes:
    body = b""
    for chunk in chunks:
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT]


def _read_checked(chunks: Iterator[bytes], ref: PayloadRef) -> bytes:
    parts: list[bytes] = []
    received = 0
    digest = hashlib.sha256()
    for chunk in chunks:
        received += len(chunk)
        if received > ref.size:
            raise PayloadCorrupt(f"the job's input in object storage is larger than the {ref.size} bytes stored "
                                 f"(object {ref.key!r}); it was replaced or damaged: submit it again")
        digest.update(chunk)
        parts.append(chunk)
    if received != ref.size or digest.hexdigest() != ref.sha256:
        raise PayloadCorrupt(f"the job's input in object storage is not what was stored (object {ref.key!r}: "
                             f"{received} bytes, its SHA-256 differs); it was replaced or damaged: submit it again")
    return b"".join(parts)
