"""The LLM job request, validated by the gateway and read again by worker-llm."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class LlmParams(BaseModel):
    """What the worker needs to run an LLM job: exactly one of `messages` or `prompt`."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=256)
    prompt: str | None = Field(default=None, min_length=1, max_length=200_000)
    model: str | None = Field(default=None, max_length=200, description="Model name; the worker's default when absent.")
    # The upper bound is the deployment's (OFFLOAD_LLM_MAX_TOKENS_LIMIT, 4096 by default), checked
    # by the gateway at submit and by the worker, with one message: not a second, fixed one here.
    max_tokens: int = Field(default=256, ge=1, description=(
        "Most tokens to generate; at most the deployment's limit, OFFLOAD_LLM_MAX_TOKENS_LIMIT (4096 by default)"))
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)

    @model_validator(mode="after")
    def _one_input(self) -> "LlmParams":
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'messages' or 'prompt'")
        return self

    def preview(self, length: int = 80) -> str:
        """The prompt's first words, for listings: the last user message (or the prompt), on one
        line, cut at a word boundary."""
        users = [m.content for m in self.messages or [] if m.role == "user"]
        text = " ".join((self.prompt if self.prompt is not None else (users[-1] if users else "")).split())
        if len(text) <= length:
            return text
        cut = text[:length].rsplit(" ", 1)[0] or text[:length]
        return cut + "…"

    def chat_messages(self) -> list[dict[str, str]]:
        """The request as chat messages: a bare prompt becomes one user message."""
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]
