"""The one interface every LLM backend implements, and what it returns.

A backend turns validated `LlmParams` into text. While it generates it hands each piece of text
to `on_token` as soon as it has it, and calls `checkpoint()` between pieces; `checkpoint()`
raises `JobCancelled` when the job was cancelled, and the backend lets that propagate after
releasing what it holds (HTTP stream, llama.cpp generator). Failures are `RetryableJobError`
(the remote side or the worker had a transient problem) or `PermanentJobError` (the request
itself can never succeed).
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Callable

from offload_core.errors import PermanentJobError
from offload_core.llm.models import ModelRoute, model_map
from offload_core.llm.request import LlmParams
from offload_core.settings import Settings

OnToken = Callable[[str], None]
Checkpoint = Callable[[], None]
# `abortable(fn)`: while inside, the hard time limit may call fn (from another thread) to end the
# backend's blocking I/O at once (JobContext.abortable).
Abortable = Callable[[Callable[[], None]], AbstractContextManager[None]]


def never_aborted(_: Callable[[], None]) -> AbstractContextManager[None]:
    return nullcontext()


@dataclass(frozen=True, slots=True)
class LlmUsage:
    """Token counts. `source` says where they come from: "model" (the model or server counted
    them) or "stream_chunks" (the server sent no usage, so completion tokens are the number of
    streamed content chunks, one token each on llama.cpp and vLLM servers; prompt tokens are
    then unknown, None). None always means "not told", never a guess."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    source: str = "model"


@dataclass(frozen=True, slots=True)
class LlmResult:
    text: str
    finish_reason: str | None  # "stop", "length", ... as the model reported it
    usage: LlmUsage
    model: str

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data, the shape stored as the job's result."""
        return asdict(self)


class LlmBackend(abc.ABC):
    @abc.abstractmethod
    def generate(self, params: LlmParams, route: ModelRoute | None = None, *, on_token: OnToken,
                 checkpoint: Checkpoint, abortable: Abortable = never_aborted) -> LlmResult:
        """Generate a completion for `params` with the model of `route` (None: the route of
        `params.model` in the model map), streaming pieces of text through `on_token`."""

    def close(self) -> None:
        """Release connections or model memory. The backend must not be used afterwards."""


def route_of(params: LlmParams, settings: Settings) -> ModelRoute:
    """The route of the model a request names (or of the default model), whoever the tenant."""
    models = model_map(settings)
    route = models.routes.get(params.model or models.default)
    if route is None:
        raise PermanentJobError(f"model {params.model!r} is not served here; models: {', '.join(models.names())}",
                                error_type="ModelRefused")
    return route


def check_request_limits(params: LlmParams, settings: Settings) -> None:
    """Refuse requests beyond this worker's configured limits, whatever the gateway let through."""
    if params.max_tokens > settings.llm_max_tokens_limit:
        raise PermanentJobError(
            f"max_tokens is {params.max_tokens}; this service allows at most {settings.llm_max_tokens_limit}"
        )
    prompt_chars = sum(len(m["content"]) for m in params.chat_messages())
    if prompt_chars > settings.llm_max_prompt_chars:
        raise PermanentJobError(
            f"the prompt is {prompt_chars} characters; this service allows at most {settings.llm_max_prompt_chars}"
        )
