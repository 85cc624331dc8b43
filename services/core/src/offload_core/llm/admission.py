"""The checks an LLM request meets before it is stored, the same for a single job
(POST /v1/jobs/llm) and for each line of a batch: limits, the model map, the token budget."""

from __future__ import annotations

from dataclasses import dataclass

from offload_core.errors import RequestRefused
from offload_core.llm.models import ModelRefused, ModelRoute, estimate_prompt_tokens, model_map
from offload_core.llm.request import LlmParams
from offload_core.settings import Settings


@dataclass(frozen=True)
class LlmAdmission:
    route: ModelRoute
    cost: int  # what the job may use under OFFLOAD_LLM_TOKENS_PER_MINUTE: max_tokens + a prompt estimate


def admit_llm(params: LlmParams, settings: Settings, tenant: str) -> LlmAdmission:
    """The route and token cost of an acceptable request; `RequestRefused` saying what to fix."""
    if params.max_tokens > settings.llm_max_tokens_limit:
        # The one limit, stated once: LlmParams has no fixed bound of its own to contradict it.
        detail = (f"max_tokens may be at most {settings.llm_max_tokens_limit} on this service "
                  "(OFFLOAD_LLM_MAX_TOKENS_LIMIT)")
        raise RequestRefused("max_tokens too large", detail, errors=[{"field": "max_tokens", "message": detail}])
    prompt_chars = sum(len(m["content"]) for m in params.chat_messages())
    if prompt_chars > settings.llm_max_prompt_chars:
        raise RequestRefused("Prompt too long", f"the prompt may be at most {settings.llm_max_prompt_chars} characters")
    try:
        route = model_map(settings).route_for(params.model, tenant)
    except ModelRefused as exc:
        raise RequestRefused("Unknown model", str(exc), allowed_models=exc.allowed) from None
    if params.response_format is not None and params.response_format.type == "json_schema" and not route.json_schema:
        raise RequestRefused("json_schema not supported",
                             f"model {route.name!r} does not take response_format json_schema; use json_object")
    # The tokens-per-minute limit counts what the job may use: its max_tokens and its prompt.
    cost = params.max_tokens + estimate_prompt_tokens(prompt_chars)
    if settings.llm_tokens_per_minute and cost > settings.llm_tokens_per_minute:
        raise RequestRefused("Job too large for the token limit",
                             f"this job may use {cost} tokens (max_tokens plus about one per 4 prompt characters); your "
                             f"tenant may use {settings.llm_tokens_per_minute} per minute: lower max_tokens or the prompt")
    return LlmAdmission(route, cost)
