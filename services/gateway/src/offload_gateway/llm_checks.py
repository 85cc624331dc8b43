"""The checks an LLM request passes at submit, wherever it comes from (a job, a pipeline step):
what a worker would certainly refuse is refused here, with what to change."""

from __future__ import annotations

from dataclasses import dataclass

from offload_core.llm.request import LlmParams
from offload_core.settings import Settings
from offload_core.web.problems import ProblemError


@dataclass(frozen=True)
class CheckedLlm:
    model: str  # the model it runs on (the worker's default when it named none)
    prompt_chars: int


def check_llm_request(params: LlmParams, settings: Settings, tenant: str, *, where: str = "") -> CheckedLlm:
    """Refuse (422) a request beyond the limits. `where` names it in a message ("step 2: ")."""
    if params.max_tokens > settings.llm_max_tokens_limit:
        raise ProblemError(422, "max_tokens too large", f"{where}max_tokens may be at most {settings.llm_max_tokens_limit}")
    prompt_chars = sum(len(m["content"]) for m in params.chat_messages())
    if prompt_chars > settings.llm_max_prompt_chars:
        raise ProblemError(422, "Prompt too long",
                           f"{where}the prompt may be at most {settings.llm_max_prompt_chars} characters")
    return CheckedLlm(model=params.model or settings.llm_model, prompt_chars=prompt_chars)
