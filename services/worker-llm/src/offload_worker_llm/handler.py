"""The LLM job handler: parse the stored request, find its model's route, and stream it through
the configured backend, holding a slot of the route's global in-flight cap while the stream runs.

A pipeline step (its params name the jobs it waited for, `inputs`) first fills its prompt with
their results (offload_core.pipelines.render); text too long for the context is asked about in
chunks, one generation each, and the result says how it was chunked."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from offload_core.errors import PermanentJobError
from offload_core.llm.models import ModelRefused, ModelRoute, check_model_map, model_map
from offload_core.llm.request import LlmParams
from offload_core.pipelines.render import RenderedStep, StepInputMissing, render, step_parts
from offload_core.process_local import PerProcess
from offload_core.settings import Settings
from offload_core.worker.handler import JobContext, JobHandler

from .backends import make_backend
from .backends.base import LlmResult

tracer = trace.get_tracer("offload.worker.llm")
CHUNK_SEPARATOR = "\n\n"  # between the answers of a chunked step, in its text and its token stream


def make_handler(settings: Settings) -> JobHandler:
    check_model_map(settings)  # a bad model map stops the worker at start, saying what is wrong
    models = model_map(settings)
    backend = PerProcess(lambda: make_backend(settings))

    def generate(ctx: JobContext, params: LlmParams, route: ModelRoute) -> LlmResult:
        # One span per generation; for the openai backend its HTTP call (with `traceparent`)
        # sits under it. Only sizes and counts are recorded, never the prompt or the answer.
        with tracer.start_as_current_span("llm.generate", attributes={
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
        return result

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
        step = _pipeline_step(ctx, params, settings)
        capped = route.max_in_flight > 0 and settings.llm_backend == "openai"
        slot = ctx.capacity_slot(f"llm:{route.name}", route.max_in_flight,
                                 f"waiting for a free stream of model {route.name} "
                                 f"(at most {route.max_in_flight} at once)") if capped else nullcontext()
        results: list[LlmResult] = []
        with slot:
            for number, request in enumerate(step.requests):
                if number:
                    ctx.tokens(CHUNK_SEPARATOR)
                    ctx.progress(number, len(step.requests), f"chunk {number + 1}/{len(step.requests)}")
                results.append(generate(ctx, request, route))
        # Counted under the name the tenant asked for (what it is allowed and billed by).
        ctx.count_usage(route.name, sum(r.usage.prompt_tokens or 0 for r in results),
                        sum(r.usage.completion_tokens or 0 for r in results))
        if step.chunking is None:
            return results[0].as_dict()
        return _combined(results, step.chunking)

    return handle


def _pipeline_step(ctx: JobContext, params: LlmParams, settings: Settings) -> RenderedStep:
    """The requests to make: the job's own, or a pipeline step's prompt filled with its inputs."""
    inputs = ctx.params.get("inputs")
    if not inputs:
        return RenderedStep([params], None)
    try:
        parts = step_parts(ctx.results_of(inputs), ctx.params.get("page"), inputs)
    except StepInputMissing as exc:
        raise PermanentJobError(f"{exc}; submit the pipeline again", error_type="StepInputMissing") from None
    return render(params, parts, context_tokens=settings.llm_context_tokens)


def _combined(results: list[LlmResult], chunking: dict[str, Any]) -> dict[str, Any]:
    """One result for a step asked in chunks: the answers in order, usage summed."""
    def total(name: str) -> int | None:
        values = [getattr(r.usage, name) for r in results]
        return None if any(v is None for v in values) else sum(values)

    return {
        "text": CHUNK_SEPARATOR.join(r.text for r in results),
        "finish_reason": "length" if any(r.finish_reason == "length" for r in results) else results[-1].finish_reason,
        "usage": {"prompt_tokens": total("prompt_tokens"), "completion_tokens": total("completion_tokens"),
                  "total_tokens": total("total_tokens"), "source": results[0].usage.source},
        "model": results[-1].model,
        "chunking": {**chunking, "finish_reasons": [r.finish_reason for r in results]},
    }
