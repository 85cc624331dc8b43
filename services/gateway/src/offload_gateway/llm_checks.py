"""The checks an LLM request passes at submit, wherever it comes from (a job, a pipeline step):
what a worker would certainly refuse is refused here (422), saying what to change."""

from __future__ import annotations

from dataclasses import dataclass

from offload_core.llm.models import ModelRefused, estimate_prompt_tokens, model_map
from offload_core.llm.request import LlmParams
from offload_core.settings import Settings
from offload_core.web.problems import ProblemError


@dataclass(frozen=True)
class CheckedLlm:
    model: str  # the route it runs on (the default model when it named none)
    prompt_chars: int
    tokens: int  # what the tokens-per-minute limit counts: max_tokens and a prompt estimate


def check_llm_request(params: LlmParams, settings: Settings, tenant: str, *, where: str = "") -> CheckedLlm:
    """Refuse a request beyond the limits or for a model the tenant may not use. `where` names
    it in the message ("step 2 (summary): ")."""
    if params.max_tokens > settings.llm_max_tokens_limit:
        raise ProblemError(422, "max_tokens too large", f"{where}max_tokens may be at most {settings.llm_max_tokens_limit}")
    prompt_chars = sum(len(m["content"]) for m in params.chat_messages())
    if prompt_chars > settings.llm_max_prompt_chars:
        raise ProblemError(422, "Prompt too long",
                           f"{where}the prompt may be at most {settings.llm_max_prompt_chars} characters")
    try:
        route = model_map(settings).route_for(params.model, tenant)
    except ModelRefused as exc:
        raise ProblemError(422, "Unknown model", f"{where}{exc}", allowed_models=exc.allowed) from None
    if params.response_format is not None and params.response_format.type == "json_schema" and not route.json_schema:
        raise ProblemError(422, "json_schema not supported",
                           f"{where}model {route.name!r} does not take response_format json_schema; use json_object")
    # The tokens-per-minute limit counts what the job may use: its max_tokens and its prompt.
    cost = params.max_tokens + estimate_prompt_tokens(prompt_chars)
    if settings.llm_tokens_per_minute and cost > settings.llm_tokens_per_minute:
        raise ProblemError(422, "Job too large for the token limit",
                           f"{where}this job may use {cost} tokens (max_tokens plus about one per 4 prompt characters); "
                           f"your tenant may use {settings.llm_tokens_per_minute} per minute: lower max_tokens or the prompt")
    return CheckedLlm(model=route.name, prompt_chars=prompt_chars, tokens=cost)
