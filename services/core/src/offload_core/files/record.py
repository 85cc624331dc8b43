"""A file's record: the Redis hash, and the OpenAI `file` object clients see."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from offload_core.jobs.record import as_text
from offload_core.payloads.ref import PayloadRef

# Purposes: `batch` is what tenants upload (batch input); `batch_output` is what batches write.
UPLOAD_PURPOSES = ("batch",)
OUTPUT_PURPOSE = "batch_output"

FIELDS = ("id", "tenant", "filename", "purpose", "bytes", "created_at", "expires_at", "content_ref", "pinned_by")


@dataclass(frozen=True)
class FileRecord:
    id: str
    tenant: str
    filename: str
    purpose: str
    bytes: int
    created_at: float
    expires_at: float
    content_ref: str = ""  # a PayloadRef as JSON when the bytes are in S3; "" when in Redis
    pinned_by: str = ""  # the batch reading it (it cannot be deleted until that batch ends)

    @classmethod
    def from_values(cls, values: list[Any]) -> "FileRecord | None":
        """A record read with HMGET FIELDS; None when there is none."""
        if values[0] is None:
            return None
        h = {name: as_text(v) if v is not None else "" for name, v in zip(FIELDS, values)}
        return cls(id=h["id"], tenant=h["tenant"], filename=h["filename"], purpose=h["purpose"],
                   bytes=int(h["bytes"] or 0), created_at=float(h["created_at"]), expires_at=float(h["expires_at"]),
                   content_ref=h["content_ref"], pinned_by=h["pinned_by"])

    def to_hash(self) -> list[str]:
        """The field/value pairs written at creation, flat (the create script's `fields`)."""
        pairs = {"id": self.id, "tenant": self.tenant, "filename": self.filename, "purpose": self.purpose,
                 "bytes": str(self.bytes), "created_at": repr(self.created_at), "expires_at": repr(self.expires_at),
                 "content_ref": self.content_ref}
        return [x for kv in pairs.items() for x in kv]

    @property
    def ref(self) -> PayloadRef | None:
        return PayloadRef.from_json(self.content_ref) if self.content_ref else None

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": int(self.created_at),
                "expires_at": int(self.expires_at), "filename": self.filename, "purpose": self.purpose,
                "status": "processed", "status_details": None}


def fields_json(record: FileRecord) -> str:
    return json.dumps(record.to_hash(), separators=(",", ":"))
