"""What every embedding backend returns, and the OpenAI result the job stores."""

from __future__ import annotations

import abc
import base64
import struct
from dataclasses import dataclass
from typing import Any

from offload_core.embed.request import EmbedParams

from ..backends.base import Abortable, Checkpoint, never_aborted


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]  # one per input, in input order
    prompt_tokens: int
    model: str

    def as_openai(self, encoding_format: str) -> dict[str, Any]:
        """OpenAI's embeddings object: `base64` is the vector's little-endian float32 bytes."""
        data = [{"object": "embedding", "index": i,
                 "embedding": _base64(v) if encoding_format == "base64" else v} for i, v in enumerate(self.vectors)]
        return {"object": "list", "data": data, "model": self.model,
                "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}}


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


class Embedder(abc.ABC):
    @abc.abstractmethod
    def embed(self, params: EmbedParams, *, checkpoint: Checkpoint, abortable: Abortable = never_aborted) -> Embeddings:
        """One vector per text of `params`; `checkpoint()` between pieces of work (cancel).
        Failures are `RetryableJobError` (try again later) or `PermanentJobError` (never)."""

    def close(self) -> None:
        """Release connections or model memory."""
