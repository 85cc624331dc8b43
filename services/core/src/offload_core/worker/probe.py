"""The probe job's handler: sleeps in steps (reporting progress, honouring cancel), then
succeeds or fails as asked. Every worker runs it (queue/routing.py: consumed_by)."""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import ValidationError

from offload_core.errors import PermanentJobError, RetryableJobError
from offload_core.probe.request import ProbeParams
from offload_core.worker.handler import JobContext


def handle_probe(ctx: JobContext) -> dict[str, Any]:
    try:
        params = ProbeParams.model_validate_json(ctx.payload)
    except ValidationError as exc:
        raise PermanentJobError(f"the stored request is not valid: {exc.errors()[0]['msg']}",
                                error_type="InvalidRequest") from None
    started = time.monotonic()
    for step in range(1, params.steps + 1):
        deadline = started + params.sleep_seconds * step / params.steps
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))
            ctx.checkpoint()
        if params.steps > 1:
            ctx.progress(step, params.steps, "probing")
    if params.fail == "retryable" or ctx.attempt <= params.fail_attempts:
        raise RetryableJobError("the probe was asked to fail (retryable)", error_type="ProbeFailure")
    if params.fail == "permanent":
        raise PermanentJobError("the probe was asked to fail (permanent)", error_type="ProbeFailure")
    return {"slept_seconds": round(time.monotonic() - started, 3), "attempt": ctx.attempt, "pid": os.getpid()}
