"""A batch's record (a Redis hash) and the OpenAI `batch` object clients see.

Statuses, as OpenAI names them: `in_progress` (lines are fed and run), `cancelling` (asked to stop:
unfinished lines are being cancelled), `finalizing` (the window ran out: unfinished lines are
being cancelled; or the output files are being written), then one of `completed`, `cancelled`,
`expired`, or `failed` (the input file could not be read any more). `validating` is never seen:
the whole file is validated inside POST /v1/batches, and a file that fails is refused there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from offload_core.jobs.record import as_text

ACTIVE_STATUSES = ("in_progress", "cancelling", "finalizing")
FINAL_STATUSES = ("completed", "cancelled", "expired", "failed")
# OpenAI's one completion window.
COMPLETION_WINDOWS = {"24h": 24 * 3600}

FIELDS = ("id", "tenant", "endpoint", "input_file_id", "completion_window", "status", "created_at", "in_progress_at",
          "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
          "metadata", "priority", "callback_url", "total", "fed", "cursor", "next_line", "completed", "failed",
          "output_file_id", "error_file_id", "errors", "ending", "webhook")


@dataclass
class BatchRecord:
    id: str
    tenant: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: float
    expires_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    priority: str = "low"
    callback_url: str = ""
    total: int = 0  # requests in the file
    fed: int = 0  # lines submitted as jobs so far
    cursor: int = 0  # byte offset of the next line to feed
    next_line: int = 1  # its line number
    completed: int = 0  # lines that succeeded (live: the output hash's size, until the batch ends)
    failed: int = 0  # lines that failed (live: the error hash's size)
    output_file_id: str = ""
    error_file_id: str = ""
    errors: list[dict[str, Any]] | None = None
    ending: str = ""  # the final status a batch that stops early is headed for (cancelled | expired | failed)
    webhook: dict[str, Any] | None = None
    times: dict[str, float] = field(default_factory=dict)  # in_progress_at, finalizing_at, ... as they happen

    @classmethod
    def from_values(cls, values: list[Any]) -> "BatchRecord | None":
        if values[0] is None:
            return None
        h = {name: as_text(v) for name, v in zip(FIELDS, values) if v is not None and v != b""}
        times = {name: float(h[name]) for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at",
                                                    "expired_at", "cancelling_at", "cancelled_at") if name in h}
        return cls(id=h["id"], tenant=h["tenant"], endpoint=h["endpoint"], input_file_id=h["input_file_id"],
                   completion_window=h["completion_window"], status=h["status"], created_at=float(h["created_at"]),
                   expires_at=float(h["expires_at"]), metadata=json.loads(h.get("metadata", "{}")),
                   priority=h.get("priority", "low"), callback_url=h.get("callback_url", ""),
                   total=int(h.get("total", 0)), fed=int(h.get("fed", 0)), cursor=int(h.get("cursor", 0)),
                   next_line=int(h.get("next_line", 1)), completed=int(h.get("completed", 0)),
                   failed=int(h.get("failed", 0)), output_file_id=h.get("output_file_id", ""),
                   error_file_id=h.get("error_file_id", ""),
                   errors=json.loads(h["errors"]) if "errors" in h else None, ending=h.get("ending", ""),
                   webhook=json.loads(h["webhook"]) if "webhook" in h else None, times=times)

    def to_hash(self) -> list[str]:
        pairs = {"id": self.id, "tenant": self.tenant, "endpoint": self.endpoint, "input_file_id": self.input_file_id,
                 "completion_window": self.completion_window, "status": self.status,
                 "created_at": repr(self.created_at), "expires_at": repr(self.expires_at),
                 "metadata": json.dumps(self.metadata, separators=(",", ":")), "priority": self.priority,
                 "callback_url": self.callback_url, "total": str(self.total), "fed": "0", "cursor": "0",
                 "next_line": "1", **{k: repr(v) for k, v in self.times.items()}}
        return [x for kv in pairs.items() for x in kv]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def to_api(self, *, completed: int | None = None, failed: int | None = None) -> dict[str, Any]:
        """OpenAI's batch object. `completed`/`failed`: live counts for a batch still running."""
        done = self.completed if completed is None else completed
        bad = self.failed if failed is None else failed

        def at(name: str) -> int | None:
            value = self.times.get(name)
            return int(value) if value is not None else None

        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id, "completion_window": self.completion_window, "status": self.status,
            "output_file_id": self.output_file_id or None, "error_file_id": self.error_file_id or None,
            "created_at": int(self.created_at), "in_progress_at": at("in_progress_at"),
            "expires_at": int(self.expires_at), "finalizing_at": at("finalizing_at"),
            "completed_at": at("completed_at"), "failed_at": at("failed_at"), "expired_at": at("expired_at"),
            "cancelling_at": at("cancelling_at"), "cancelled_at": at("cancelled_at"),
            "request_counts": {"total": self.total, "completed": done, "failed": bad},
            "metadata": self.metadata or None,
        }
