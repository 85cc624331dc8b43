"""The job record: its fields, and how it is stored as a Redis hash of strings.

Times are Unix seconds (floats) in the store and ISO 8601 in the API. Nested fields (progress,
error, params) are JSON strings in the hash. The same hash also carries the job's input
(`payload`), its result (`result`) and, while it waits in the delayed set, the queue message
that will run it (`message`): the store reads those separately (RECORD_FIELDS leaves them out).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from offload_core.types import JobState, JobType, Priority


class Progress(BaseModel):
    current: int = 0
    total: int = 0
    message: str = ""


class JobErrorInfo(BaseModel):
    type: str
    message: str
    retryable: bool


class Job(BaseModel):
    """A job as the store knows it. `Job.to_api()` is what clients see."""

    id: str
    type: JobType
    tenant: str
    priority: Priority
    state: JobState
    progress: Progress | None = None
    attempts: int = 0
    max_attempts: int = 1
    created_at: float
    run_at: float | None = None  # a scheduled job's time
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    retry_at: float | None = None
    error: JobErrorInfo | None = None
    params: dict[str, Any] = {}
    idempotency_key: str | None = None
    callback_url: str | None = None
    trace_id: str | None = None
    cancel_requested: bool = False
    worker: str | None = None
    result_writes: int = 0
    webhook: dict[str, Any] | None = None
    queue: str = ""  # the Redis list its message goes to (routing.queue_name, set at submit)
    payload_bytes: int = 0  # the input's size: what the tenant's byte quota counts
    payload_ref: str | None = None  # the input in object storage (offload_core.payloads), else inline
    final_event: str | None = None  # the stream id of the terminal state event (replayed from here)
    batch: str | None = None  # the batch this job is a line of (its end is collected into the batch)

    @classmethod
    def from_hash(cls, raw: dict[bytes | str, bytes | str]) -> "Job":
        h = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls(
            id=h["id"],
            type=h["type"],
            tenant=h["tenant"],
            priority=h["priority"],
            state=h["state"],
            progress=_json_or_none(h.get("progress")),
            attempts=int(h.get("attempts") or 0),
            max_attempts=int(h.get("max_attempts") or 1),
            created_at=float(h["created_at"]),
            run_at=_float_or_none(h.get("run_at")),
            queued_at=_float_or_none(h.get("queued_at")),
            started_at=_float_or_none(h.get("started_at")),
            finished_at=_float_or_none(h.get("finished_at")),
            retry_at=_float_or_none(h.get("retry_at")),
            error=_json_or_none(h.get("error")),
            params=_json_or_none(h.get("params")) or {},
            idempotency_key=h.get("idempotency_key") or None,
            callback_url=h.get("callback_url") or None,
            trace_id=h.get("trace_id") or None,
            cancel_requested=h.get("cancel_requested") == "1",
            worker=h.get("worker") or None,
            result_writes=int(h.get("result_writes") or 0),
            webhook=_json_or_none(h.get("webhook")),
            queue=h.get("queue") or "",
            payload_bytes=int(h.get("payload_bytes") or 0),
            payload_ref=h.get("payload_ref") or None,
            final_event=h.get("final_event") or None,
            batch=h.get("batch") or None,
        )

    def to_hash(self) -> dict[str, str]:
        """The fields written at submit time (the rest are set by transitions)."""
        h = {
            "id": self.id,
            "type": self.type.value,
            "tenant": self.tenant,
            "priority": self.priority.value,
            "state": self.state.value,
            "attempts": str(self.attempts),
            "max_attempts": str(self.max_attempts),
            "created_at": repr(self.created_at),
            "params": json.dumps(self.params, separators=(",", ":")),
            "queue": self.queue,
            "payload_bytes": str(self.payload_bytes),
        }
        for name in ("run_at", "queued_at"):
            value = getattr(self, name)
            if value is not None:
                h[name] = repr(value)
        for name in ("idempotency_key", "callback_url", "trace_id", "payload_ref", "batch"):
            value = getattr(self, name)
            if value:
                h[name] = value
        return h

    def to_api(self, *, status_base_url: str = "") -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type.value,
            "priority": self.priority.value,
            "state": self.state.value,
            "progress": self.progress.model_dump() if self.progress else None,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": iso(self.created_at),
            "run_at": iso(self.run_at),
            "queued_at": iso(self.queued_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "retry_at": iso(self.retry_at) if self.state is JobState.RETRYING else None,
            "error": self.error.model_dump() if self.error else None,
            "params": self.params,
            "idempotency_key": self.idempotency_key,
            "callback_url": self.callback_url,
            "trace_id": self.trace_id,
            "batch_id": self.batch,
            "cancel_requested": self.cancel_requested,
            "webhook": self.webhook,
            "links": {
                "self": f"{status_base_url}/v1/jobs/{self.id}",
                "events": f"{status_base_url}/v1/jobs/{self.id}/events",
                "result": f"{status_base_url}/v1/jobs/{self.id}/result" if self.state is JobState.SUCCEEDED else None,
            },
        }
        return body


# The fields a reader of the record asks for (the hash also holds the input and the result).
RECORD_FIELDS: tuple[str, ...] = (
    "id", "type", "tenant", "priority", "state", "progress", "attempts", "max_attempts", "created_at", "run_at",
    "queued_at", "started_at", "finished_at", "retry_at", "error", "params", "idempotency_key", "callback_url",
    "trace_id", "cancel_requested", "worker", "result_writes", "webhook", "queue", "payload_bytes", "payload_ref",
    "final_event", "batch",
)


def from_fields(values: list[bytes | str | None]) -> "Job | None":
    """A record read with HMGET RECORD_FIELDS (None when the job does not exist)."""
    if values[0] is None:
        return None
    return Job.from_hash({k: v for k, v in zip(RECORD_FIELDS, values) if v is not None})


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def as_text(value: bytes | str) -> str:
    """A Redis reply as text: redis-py hands back bytes unless the client decodes."""
    return value.decode() if isinstance(value, bytes) else value


def _float_or_none(value: str | None) -> float | None:
    return float(value) if value else None


def _json_or_none(value: str | None) -> Any:
    return json.loads(value) if value else None
