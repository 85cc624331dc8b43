"""The probe job's request: how long to sleep, how many progress steps, and whether to fail.

Probe jobs exercise the whole platform (submit, queue, a worker's claim and lease, events,
outcome) without OCR or a model: `helm test`, synthetic monitoring and the benchmarks use them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sleep_seconds: float = Field(default=0.0, ge=0, description="How long the job runs (cancellable throughout).")
    steps: int = Field(default=1, ge=1, le=100, description="Progress events over the sleep.")
    fail: Literal["none", "retryable", "permanent"] = Field(
        default="none", description="End with a retryable error (retried, then dead) or a permanent one (failed).")
    fail_attempts: int = Field(default=0, ge=0, le=100, description=(
        "Fail with a retryable error on the first this-many attempts, then succeed: a transient failure."))
