"""What can go wrong with a stored payload, in the terms of whoever meets it.

Each is a job error for the worker that reads a payload (the runner fails or retries the job)
and, for `PayloadUnavailable`, also a `StoreUnavailable` for the gateway that writes one (the
APIs answer 503 + Retry-After): object storage not answering is the same fact on both sides.
Messages are shown to clients in the job's `error`; they name no credentials or endpoints.
"""

from __future__ import annotations

from offload_core.errors import PermanentJobError, RetryableJobError, StoreUnavailable


class PayloadMissing(PermanentJobError):
    """The object the job record names is not in the bucket (deleted early, or by a lifecycle
    rule shorter than the job's life): no retry can bring it back."""


class PayloadCorrupt(PermanentJobError):
    """The object's bytes are not those stored: another size or SHA-256 than the record says."""


class PayloadUnavailable(RetryableJobError, StoreUnavailable):
    """Object storage did not answer, answered 5xx, or refused us (credentials, bucket): worth
    trying again later; the operator may have to fix the configuration first."""
