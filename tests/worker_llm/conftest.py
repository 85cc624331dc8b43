"""Fixtures for the LLM backends: a real llama.cpp OpenAI-compatible server, the in-process model,
and a small scripted HTTP peer for the failure modes a real server will not produce on demand."""

from __future__ import annotations

from typing import Iterator

import pytest
from offload_core.settings import Settings
from offload_worker_llm.backends.llamacpp import LlamaCppBackend

from tests.worker_llm.llm_peer import ScriptedPeer



@pytest.fixture(scope="session")
def llamacpp_backend() -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(Settings(env="dev", llm_backend="llamacpp", llm_threads=2))
    backend.load()
    yield backend
    backend.close()


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    server = ScriptedPeer().start()
    yield server
    server.stop()
