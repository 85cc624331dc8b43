"""The LLM job handler: parse the stored request, stream it through the configured backend."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from offload_core.errors import PermanentJobError
from offload_core.handler import JobContext, JobHandler
from offload_core.llm_request import LlmParams
from offload_core.process_local import PerProcess
from offload_core.settings import Settings

from .backends import make_backend


def make_handler(settings: Settings) -> JobHandler:
    backend = PerProcess(lambda: make_backend(settings))

    def handle(ctx: JobContext) -> dict[str, Any]:
        try:
            params = LlmParams.model_validate_json(ctx.payload)
        except ValidationError as exc:
            raise PermanentJobError(f"the stored request is not valid: {exc.errors()[0]['msg']}",
                                    error_type="InvalidRequest") from None
        result = backend.get().generate(params, on_token=ctx.tokens, checkpoint=ctx.checkpoint)
        return result.as_dict()

    return handle
