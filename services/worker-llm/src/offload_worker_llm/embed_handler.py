"""The embed job handler: parse the stored request, check it again (settings may have changed
since the gateway took it), embed it through the configured backend, and return OpenAI's
embeddings object. The tokens count in the tenant's usage under the model's name."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from offload_core.embed.request import EmbedParams, admit_embed
from offload_core.errors import PermanentJobError, RequestRefused
from offload_core.process_local import PerProcess
from offload_core.settings import Settings
from offload_core.worker.handler import JobContext, JobHandler

from .embeddings import make_embedder

tracer = trace.get_tracer("offload.worker.embed")


def make_embed_handler(settings: Settings) -> JobHandler:
    embedder = PerProcess(lambda: make_embedder(settings))

    def handle(ctx: JobContext) -> dict[str, Any]:
        try:
            params = EmbedParams.model_validate_json(ctx.payload)
        except ValidationError as exc:
            raise PermanentJobError(f"the stored request is not valid: {exc.errors()[0]['msg']}",
                                    error_type="InvalidRequest") from None
        try:
            model = admit_embed(params, settings)
        except RequestRefused as exc:
            raise PermanentJobError(exc.detail, error_type="InvalidRequest") from None
        # Sizes and counts only, never the texts or the vectors.
        with tracer.start_as_current_span("embed.generate", attributes={
            "gen_ai.operation.name": "embeddings", "gen_ai.system": settings.embed_backend,
            "gen_ai.request.model": model, "offload.embed.inputs": len(params.texts()),
        }) as span:
            result = embedder.get().embed(params, checkpoint=ctx.checkpoint, abortable=ctx.abortable)
            span.set_attribute("gen_ai.usage.input_tokens", result.prompt_tokens)
        ctx.count_usage(model, result.prompt_tokens, 0)
        return result.as_openai(params.encoding_format)

    return handle
