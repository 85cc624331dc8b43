"""Offload's exceptions.

    OffloadError
    ├── JobError                 raised by a job handler; `retryable` decides retry or fail
    │   ├── RetryableJobError    transient: back off and run again while attempts remain
    │   └── PermanentJobError    the input or request is at fault: fail at once, never retry
    ├── JobCancelled             raised at a checkpoint when the job was cancelled
    ├── RequestRefused           a request that can never run here (the gateway answers 422;
    │                            a batch names it with its line number)
    └── StoreUnavailable         Redis cannot be reached (APIs answer 503 + Retry-After)
        └── StoreFull            Redis refuses writes at its maxmemory (503 too: retry later)

Error messages of job errors are shown to clients in the job's `error` field, so they say what
went wrong in the client's terms and never carry secrets.
"""

from __future__ import annotations


class OffloadError(Exception):
    """Base of every Offload exception."""


class JobError(OffloadError):
    retryable: bool = False

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__

    def as_record(self) -> dict[str, object]:
        return {"type": self.error_type, "message": self.message, "retryable": self.retryable}


class RetryableJobError(JobError):
    retryable = True

    def __init__(self, message: str, *, error_type: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, error_type=error_type)
        self.retry_after = retry_after  # seconds the remote side asked us to wait, if it said


class PermanentJobError(JobError):
    retryable = False


class JobCancelled(OffloadError):
    """The job was cancelled; the runner records `cancelled` and stops without a result."""


class RequestRefused(OffloadError):
    """A job request refused before it is stored: `title` and `detail` say what to fix; `extra`
    carries lists a client can act on (e.g. the models it may use)."""

    def __init__(self, title: str, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.title, self.detail, self.extra = title, detail, extra


class StoreUnavailable(OffloadError):
    """Redis did not answer."""


class StoreFull(StoreUnavailable):
    """Redis answered that it is at its maxmemory and refuses writes (noeviction): nothing was
    written; reads still work."""
