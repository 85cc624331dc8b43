"""LLM backends: one interface (`LlmBackend.generate`), chosen by `OFFLOAD_LLM_BACKEND`.

    openai    any OpenAI-compatible HTTP server (vLLM, llama.cpp server, OpenAI, ...)
    llamacpp  a GGUF model run in this process (extra `llamacpp`; default: bundled SmolLM2-135M)
"""

from __future__ import annotations

from offload_core.settings import Settings

from .base import Abortable, Checkpoint, LlmBackend, LlmResult, LlmUsage, OnToken, check_request_limits

__all__ = ["Abortable", "Checkpoint", "LlmBackend", "LlmResult", "LlmUsage", "OnToken", "check_request_limits",
           "make_backend"]


def make_backend(settings: Settings) -> LlmBackend:
    """The backend `settings.llm_backend` names. Cheap: nothing connects or loads until first use."""
    if settings.llm_backend == "openai":
        from .openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(settings)
    if settings.llm_backend == "llamacpp":
        # Imported only here: llama-cpp-python is an optional extra of the worker image.
        from .llamacpp import LlamaCppBackend

        return LlamaCppBackend(settings)
    raise ValueError(f"unknown LLM backend {settings.llm_backend!r}")
