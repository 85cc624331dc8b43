"""`PayloadRef`: what the job record keeps instead of the payload when the payload went to
object storage. One compact JSON string in a hash field (~150 bytes):

    {"store":"s3","bucket":"offload","key":"offload/payloads/<job id>","sha256":"<64 hex>","size":19923405}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class PayloadRef:
    store: Literal["s3"]
    bucket: str
    key: str
    sha256: str  # hex, lowercase
    size: int

    def __post_init__(self) -> None:
        if self.store != "s3":
            raise ValueError(f"unknown payload store {self.store!r}")
        if not self.bucket or not self.key:
            raise ValueError("a payload reference needs a bucket and a key")
        if not _SHA256_HEX.fullmatch(self.sha256):
            raise ValueError("a payload reference's sha256 must be 64 lowercase hex digits")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError("a payload reference's size must be a whole number of bytes")

    def to_json(self) -> str:
        return json.dumps({"store": self.store, "bucket": self.bucket, "key": self.key, "sha256": self.sha256,
                           "size": self.size}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "PayloadRef":
        """The reference a record holds; `ValueError` if it is not one."""
        try:
            fields = json.loads(text)
            return cls(store=fields["store"], bucket=fields["bucket"], key=fields["key"], sha256=fields["sha256"],
                       size=fields["size"])
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a payload reference: {exc}") from None
