"""Typed views of what the API returns: jobs, their events, listings and queue statistics.

Models ignore fields they do not know, so a newer service does not break an older client.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class JobType(StrEnum):
    OCR = "ocr"
    LLM = "llm"
    EMBED = "embed"
    PROBE = "probe"


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class JobState(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Progress(_Model):
    current: int = 0
    total: int = 0
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return self.current / self.total if self.total > 0 else None


class JobError(_Model):
    type: str
    message: str
    retryable: bool


class JobLinks(_Model):
    self: str
    events: str
    result: str | None = None


class Job(_Model):
    id: str
    type: JobType
    priority: Priority
    state: JobState
    progress: Progress | None = None
    attempts: int = 0
    max_attempts: int = 1
    created_at: datetime
    run_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retry_at: datetime | None = None
    error: JobError | None = None
    params: dict[str, Any] = {}
    idempotency_key: str | None = None
    callback_url: str | None = None
    trace_id: str | None = None
    cancel_requested: bool = False
    links: JobLinks | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


class JobPage(_Model):
    jobs: list[Job]
    next_cursor: str | None = None


class QueueDepth(_Model):
    depth: int
    oldest_age_seconds: float | None = None


class WorkerDemand(_Model):
    backlog: int
    running: int
    desired_replicas: int
    scaling: dict[str, int] = {}


class QueueStats(_Model):
    queues: dict[str, QueueDepth]
    running: int
    running_by_type: dict[str, int] = {}
    dead: int
    totals: dict[str, int] = {}
    workers: dict[str, WorkerDemand] = {}
    cluster: dict[str, Any] = {}


# -- pipelines ---------------------------------------------------------------------------------

PIPELINE_END_STATES = frozenset({"succeeded", "failed", "cancelled"})


class PipelineJob(_Model):
    """One job of a step: an ordinary job (`get_job`, `result` work on its id)."""

    id: str
    state: str  # a JobState, or "expired" once its record is gone
    attempts: int = 0
    page: int | None = None
    error: JobError | None = None


class PipelineStep(_Model):
    name: str
    type: str
    per_page: bool = False
    state: str
    done: int = 0
    jobs: list[PipelineJob]


class Pipeline(_Model):
    """A document's steps as one thing: its state is `queued`, `running`, `succeeded`, `failed`,
    `cancelling` or `cancelled`; `result` is the last step's once it has succeeded."""

    id: str
    state: str
    priority: Priority | None = None
    created_at: datetime
    ended_at: datetime | None = None
    pages: int = 0
    trace_id: str | None = None
    progress: dict[str, int] = {}
    steps: list[PipelineStep] = []
    links: dict[str, str] = {}
    result: Any = None

    @property
    def is_terminal(self) -> bool:
        return self.state in PIPELINE_END_STATES


class PipelinePage(_Model):
    pipelines: list[Pipeline]
    next_cursor: str | None = None


class PipelineEvent(_Model):
    """One event of a pipeline's stream: `pipeline` (its shape, first), `state` (a job moved:
    `{job, step, page, state}`), `blocked` (a step failed; the steps after it wait), `end`."""

    id: str
    kind: str
    data: Any = None

    @classmethod
    def from_sse(cls, event_id: str, kind: str, data: Any) -> "PipelineEvent":
        return cls(id=event_id, kind=kind, data=data)

    def pipeline_state(self) -> str | None:
        """The pipeline's state, when this event tells it (`pipeline`, `blocked` and `end` do)."""
        if self.kind == "blocked":
            return "failed"
        if self.kind in ("pipeline", "end") and isinstance(self.data, dict):
            return self.data.get("state")
        return None

    @property
    def ends_stream(self) -> bool:
        """The server ends a live stream after `end`, and after `blocked` (the pipeline failed
        and waits for a retry; after one, a new stream follows it on)."""
        return self.kind in ("end", "blocked")


# -- events (SSE) -----------------------------------------------------------------------------


class StateEvent(_Model):
    """The job moved to `state`. `attempt` is set on `running`, `error` on failures and retries."""

    id: str
    kind: Literal["state"] = "state"
    state: JobState
    at: float | None = None
    attempt: int | None = None
    error: JobError | None = None
    retry_at: float | None = None
    requeued: bool = False


class ProgressEvent(_Model):
    id: str
    kind: Literal["progress"] = "progress"
    current: int | None = None
    total: int | None = None
    message: str = ""


class TokenEvent(_Model):
    """A piece of streamed LLM output (several model tokens may arrive in one event)."""

    id: str
    kind: Literal["token"] = "token"
    text: str


class OtherEvent(_Model):
    """An event kind this client does not know yet; kept so callers can still see it."""

    id: str
    kind: str
    data: Any = None


JobEvent = StateEvent | ProgressEvent | TokenEvent | OtherEvent


def event_from_sse(event_id: str, kind: str, data: Any) -> JobEvent:
    body = data if isinstance(data, dict) else {}
    if kind == "state":
        return StateEvent(id=event_id, **body)
    if kind == "progress":
        return ProgressEvent(id=event_id, **body)
    if kind == "token":
        return TokenEvent(id=event_id, text=str(body.get("text", "")))
    return OtherEvent(id=event_id, kind=kind, data=data)


class FileObject(_Model):
    """A file of the Files API (OpenAI's shape): a batch input, or a batch's output."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: str = "processed"


class RequestCounts(_Model):
    total: int = 0
    completed: int = 0
    failed: int = 0


BATCH_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


class Batch(_Model):
    """A batch of the Batches API (OpenAI's shape)."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = RequestCounts()
    metadata: dict[str, str] | None = None
    errors: dict[str, Any] | None = None

    @property
    def is_ended(self) -> bool:
        return self.status in BATCH_ENDED


class BatchPage(_Model):
    data: list[Batch]
    has_more: bool = False
    last_id: str | None = None
