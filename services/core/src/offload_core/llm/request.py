"""The LLM job request, validated by the gateway and read again by worker-llm."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_SEQUENCES = 4
MAX_SCHEMA_BYTES = 64 * 1024


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class JsonSchemaFormat(BaseModel):
    """OpenAI's `response_format.json_schema`: a name, the schema, and whether it is strict."""

    # Read and written as `schema` (OpenAI's name); `schema_` only because BaseModel has a `schema`.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(default=None, max_length=2000)
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema object for the answer")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, separators=(",", ":"))) > MAX_SCHEMA_BYTES:
            raise ValueError(f"the schema may be at most {MAX_SCHEMA_BYTES} bytes as JSON")
        return value


class ResponseFormat(BaseModel):
    """`text` (the default), `json_object` (any JSON object), or `json_schema` (JSON that fits
    the schema; where the model's server supports it)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> "ResponseFormat":
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("response_format json_schema needs a json_schema object, and only it takes one")
        return self


class LlmParams(BaseModel):
    """What the worker needs to run an LLM job: exactly one of `messages` or `prompt`."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=256)
    prompt: str | None = Field(default=None, min_length=1, max_length=200_000)
    model: str | None = Field(default=None, max_length=200, description="Model name; the worker's default when absent.")
    max_tokens: int = Field(default=256, ge=1, le=32_768)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    # OpenAI's sampling parameters, passed through to the model's server as they are.
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(default=None, description=(
        f"Up to {MAX_STOP_SEQUENCES} sequences where the answer ends (not included in it)"))
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63, description="Best-effort deterministic sampling")
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    response_format: ResponseFormat | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not s or len(s) > 256 for s in stops):
            raise ValueError("each stop sequence must be 1 to 256 characters")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> "LlmParams":
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'messages' or 'prompt'")
        return self

    def stop_sequences(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def sampling(self) -> dict[str, Any]:
        """The OpenAI request fields beyond messages, model and max_tokens that were given."""
        out: dict[str, Any] = {"temperature": self.temperature}
        for name in ("top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.stop is not None:
            out["stop"] = self.stop_sequences()
        if self.response_format is not None:
            out["response_format"] = self.response_format.model_dump(by_alias=True, exclude_none=True)
        return out

    def chat_messages(self) -> list[dict[str, str]]:
        """The request as chat messages: a bare prompt becomes one user message."""
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]
