"""An upload on its way, written once as it arrives: in memory up to a small size, then in a
temporary file; its size and SHA-256 counted while it is written.

The gateway spools an OCR upload here instead of holding it (and copies of it) in memory; the
document inspection reads the file, and the S3 store streams it from there. Bounded twice:
each payload by its own `limit` (`SpoolLimitExceeded` as soon as a write would pass it), and
all of a process's spool files together by a `DiskBudget` (`SpoolFull`, as when the disk is).

    spool = SpooledPayload(limit=..., memory_bytes=..., budget=disk_budget(...))
    try:
        await spool.awrite(chunk)  # as the bytes arrive
        spool.seal()               # then: .size, .sha256, .path, .open(), .read_all()
    finally:
        spool.cleanup()
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import io
import os
import tempfile
import threading
import weakref
from pathlib import Path
from typing import BinaryIO

from offload_core.payloads import metrics


class SpoolLimitExceeded(Exception):
    """The payload is larger than its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class SpoolFull(Exception):
    """The process's spool files use all of their disk budget (or the disk is full)."""


class DiskBudget:
    """Bytes a process may keep in spool files at once; thread-safe (files are written from
    worker threads)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> None:
        with self._lock:
            if self.used + nbytes > self.limit:
                metrics.SPOOL_FULL.labels(medium="disk").inc()
                raise SpoolFull(f"the spool's disk budget of {self.limit} bytes is in use")
            self.used += nbytes
        metrics.SPOOL_BYTES.labels(medium="disk").inc(nbytes)

    def give_back(self, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes
        metrics.SPOOL_BYTES.labels(medium="disk").dec(nbytes)


@functools.lru_cache(maxsize=4)
def disk_budget(limit: int) -> DiskBudget:
    """The process's budget (one per limit: the settings give one)."""
    return DiskBudget(limit)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class SpooledPayload:
    def __init__(self, *, limit: int, memory_bytes: int, budget: DiskBudget, directory: str | None = None) -> None:
        self.limit = limit
        self._memory_bytes = memory_bytes
        self._budget = budget
        self._directory = directory or None
        self._buffer = bytearray()
        self._data = b""  # the sealed in-memory payload
        self._file: BinaryIO | None = None
        self._path: str | None = None
        self._on_disk = 0  # bytes taken from the budget
        self._size = 0
        self._digest = hashlib.sha256()
        self._sha256 = ""
        self._sealed = False
        self._cleaned = False
        self._finalizer: weakref.finalize | None = None

    # ------------------------------------------------------------------ writing

    def write(self, chunk: bytes) -> None:
        if self._sealed:
            raise ValueError("the spooled payload is sealed")
        if self._size + len(chunk) > self.limit:
            raise SpoolLimitExceeded(self.limit)
        if self._file is None and self._size + len(chunk) <= self._memory_bytes:
            self._buffer += chunk
            metrics.SPOOL_BYTES.labels(medium="memory").inc(len(chunk))
        else:
            if self._file is None:
                self._roll_to_disk()
            self._write_to_disk(chunk)
        self._digest.update(chunk)
        self._size += len(chunk)

    async def awrite(self, chunk: bytes) -> None:
        """`write` for an event loop: disk writes happen in a worker thread."""
        if self._file is None and self._size + len(chunk) <= self._memory_bytes:
            self.write(chunk)
        else:
            await asyncio.to_thread(self.write, chunk)

    def _roll_to_disk(self) -> None:
        fd, self._path = tempfile.mkstemp(prefix="offload-upload-", dir=self._directory)
        self._finalizer = weakref.finalize(self, _remove, self._path)  # even if nobody calls cleanup
        self._file = os.fdopen(fd, "wb")
        buffered, self._buffer = bytes(self._buffer), bytearray()
        metrics.SPOOL_BYTES.labels(medium="memory").dec(len(buffered))
        self._write_to_disk(buffered)

    def _write_to_disk(self, chunk: bytes) -> None:
        assert self._file is not None
        self._budget.take(len(chunk))
        self._on_disk += len(chunk)
        try:
            self._file.write(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                metrics.SPOOL_FULL.labels(medium="disk").inc()
                raise SpoolFull(f"the spool's disk is full ({exc.strerror})") from None
            raise

    def seal(self) -> "SpooledPayload":
        """No more writes: the size and SHA-256 are final, the bytes ready to be read."""
        if self._cleaned:
            raise ValueError("the spooled payload was cleaned up")
        if not self._sealed:
            if self._file is not None:
                self._file.close()
            else:
                self._data = bytes(self._buffer)
                self._buffer = bytearray()
            self._sha256 = self._digest.hexdigest()
            self._sealed = True
        return self

    # ------------------------------------------------------------------ reading

    @property
    def size(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        """The SHA-256 (hex) of the whole payload; known once sealed."""
        if not self._sealed:
            raise ValueError("the payload's SHA-256 is known once it is sealed")
        return self._sha256

    @property
    def path(self) -> Path | None:
        """The spool file, or None while the payload is small enough to stay in memory."""
        return Path(self._path) if self._path else None

    def open(self) -> BinaryIO:
        """A new reader from the first byte (each caller closes its own)."""
        self.seal()
        if self._path is None:
            return io.BytesIO(self._data)
        return open(self._path, "rb")

    def read_all(self) -> bytes:
        """The whole payload in memory: for payloads stored inline, and small ones."""
        self.seal()
        if self._path is None:
            return self._data
        with open(self._path, "rb") as f:
            return f.read()

    # ------------------------------------------------------------------ the end

    def cleanup(self) -> None:
        """Remove the spool file and give back its budget; safe to call more than once."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._finalizer is not None:
            self._finalizer()  # removes the file, once
        if self._on_disk:
            self._budget.give_back(self._on_disk)
            self._on_disk = 0
        held = len(self._buffer) + len(self._data)
        if held:
            metrics.SPOOL_BYTES.labels(medium="memory").dec(held)
        self._buffer, self._data = bytearray(), b""
        self._path = None
        self._sealed = self._cleaned = True

    def __enter__(self) -> "SpooledPayload":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
