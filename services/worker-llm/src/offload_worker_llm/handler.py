"""The LLM job handler: parse the stored request, stream it through the configured backend."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from offload_core.errors import PermanentJobError
from offload_core.llm.request import LlmParams
from offload_core.process_local import PerProcess
from offload_core.settings import Settings
from offload_core.worker.handler import JobContext, JobHandler

from .backends import make_backend

tracer = trace.get_tracer("offload.worker.llm")


def make_handler(settings: Settings) -> JobHandler:
    backend = PerProcess(lambda: make_backend(settings))

    def handle(ctx: JobContext) -> dict[str, Any]:
        try:
            params = LlmParams.model_validate_json(ctx.payload)
        except ValidationError as exc:
            raise PermanentJobError(f"the stored request is not valid: {exc.errors()[0]['msg']}",
                                    error_type="InvalidRequest") from None
        # One span per generation; for the openai backend its HTTP call (with `traceparent`)
        # sits under it. Only sizes and counts are recorded, never the prompt or the answer.
        with tracer.start_as_current_span("llm.generate", attributes={
            "gen_ai.system": settings.llm_backend,
            "gen_ai.request.model": params.model or settings.llm_model,
            "gen_ai.request.max_tokens": params.max_tokens,
        }) as span:
            result = backend.get().generate(params, on_token=ctx.tokens, checkpoint=ctx.checkpoint)
            span.set_attribute("gen_ai.response.model", result.model)
            if result.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
            for name, value in (("gen_ai.usage.input_tokens", result.usage.prompt_tokens),
                                ("gen_ai.usage.output_tokens", result.usage.completion_tokens)):
                if value is not None:
                    span.set_attribute(name, value)
        return result.as_dict()

    return handle
