"""What a worker's job handler sees, and what it must return.

A handler is `Callable[[JobContext], dict]`: it reads the job's payload and parameters from the
context, reports progress and streamed tokens through it, and returns a JSON-serialisable
result. It raises `RetryableJobError` / `PermanentJobError` (offload_core.errors) to fail, and
lets `JobCancelled` (raised by `checkpoint()`, `progress()` and `tokens()`) propagate.
The runner in `offload_core.worker.runner` owns everything else: claiming, leases, state changes,
retries, the result record.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable, Protocol

from offload_core.settings import Settings


class JobContext(Protocol):
    job_id: str
    tenant: str
    attempt: int            # 1 on the first run
    payload: bytes          # OCR: the uploaded file; LLM: the request as JSON bytes
    params: dict[str, Any]  # job parameters stored at submit time (e.g. {"languages": "eng"})
    settings: Settings

    def checkpoint(self) -> None:
        """Raise JobCancelled if the job was cancelled. Cheap: call it between pages or tokens."""

    def progress(self, current: int, total: int, message: str = "") -> None:
        """Record progress (an event clients see) and check for cancellation."""

    def tokens(self, text: str) -> None:
        """Append streamed output text; buffered and flushed as `token` events. Checks cancel."""

    def abortable(self, abort: Callable[[], None]) -> AbstractContextManager[None]:
        """While inside, the hard time limit may call `abort` from another thread to end the
        run's blocking I/O (where the runner enforces time limits: threads and solo pools)."""

    def capacity_slot(self, name: str, capacity: int, waiting_message: str) -> AbstractContextManager[None]:
        """Hold one of `capacity` slots of `name`, shared by every worker process, while inside;
        waits for one (cancel and time limits still apply)."""

    def count_usage(self, model: str, prompt: int, completion: int) -> None:
        """Tokens the run used: added to the tenant's counters with the result, once."""

    def results_of(self, job_ids: list[str]) -> list[dict[str, Any] | None]:
        """The results of other jobs (a pipeline step reads the steps it waited for); None for
        one that has none stored."""


JobHandler = Callable[[JobContext], dict[str, Any]]
