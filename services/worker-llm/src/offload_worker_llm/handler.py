"""The LLM job handler: parse the stored request, find its model's route, and stream it through
the configured backend, holding a slot of the route's global in-flight cap while the stream runs."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from offload_core.errors import PermanentJobError
from offload_core.llm.models import ModelRefused, check_model_map, model_map
from offload_core.llm.request import LlmParams
from offload_core.process_local import PerProcess
from offload_core.settings import Settings
from offload_core.worker.handler import JobContext, JobHandler

from .backends import make_backend

tracer = trace.get_tracer("offload.worker.llm")


def make_handler(settings: Settings) -> JobHandler:
    check_model_map(settings)  # a bad model map stops the worker at start, saying what is wrong
    models = model_map(settings)
    backend = PerProcess(lambda: make_backend(settings))

    def handle(ctx: JobContext) -> dict[str, Any]:
        try:
            params = LlmParams.model_validate_json(ctx.payload)
        except ValidationError as exc:
            raise PermanentJobError(f"the stored request is not valid: {exc.errors()[0]['msg']}",
                                    error_type="InvalidRequest") from None
        # Checked again here: the map may have changed since the gateway accepted the job, and a
        # name that is not in it must never go upstream.
        try:
            route = models.route_for(params.model, ctx.tenant)
        except ModelRefused as exc:
            raise PermanentJobError(str(exc), error_type="ModelRefused") from None
        if params.response_format is not None and params.response_format.type == "json_schema" and not route.json_schema:
            raise PermanentJobError(f"model {route.name!r} does not take response_format json_schema; "
                                    "use json_object", error_type="InvalidRequest")
        capped = route.max_in_flight > 0 and settings.llm_backend == "openai"
        slot = ctx.capacity_slot(f"llm:{route.name}", route.max_in_flight,
                                 f"waiting for a free stream of model {route.name} "
                                 f"(at most {route.max_in_flight} at once)") if capped else nullcontext()
        # One span per generation; for the openai backend its HTTP call (with `traceparent`)
        # sits under it. Only sizes and counts are recorded, never the prompt or the answer.
        with slot, tracer.start_as_current_span("llm.generate", attributes={
            "gen_ai.system": settings.llm_backend,
            "gen_ai.request.model": route.served_model,
            "gen_ai.request.max_tokens": params.max_tokens,
        }) as span:
            result = backend.get().generate(params, route, on_token=ctx.tokens, checkpoint=ctx.checkpoint,
                                            abortable=ctx.abortable)
            span.set_attribute("gen_ai.response.model", result.model)
            if result.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
            for name, value in (("gen_ai.usage.input_tokens", result.usage.prompt_tokens),
                                ("gen_ai.usage.output_tokens", result.usage.completion_tokens)):
                if value is not None:
                    span.set_attribute(name, value)
        # Counted under the name the tenant asked for (what it is allowed and billed by).
        ctx.count_usage(route.name, result.usage.prompt_tokens or 0, result.usage.completion_tokens or 0)
        return result.as_dict()

    return handle
