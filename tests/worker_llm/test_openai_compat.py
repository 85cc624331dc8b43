"""The OpenAI-compatible backend against a real llama.cpp server (`python -m llama_cpp.server`)."""

from __future__ import annotations

import pytest

from offload_core.errors import JobCancelled
from offload_core.llm.request import LlmParams
from offload_core.settings import Settings
from offload_worker_llm.backends import LlmUsage, make_backend
from offload_worker_llm.backends.openai_compat import OpenAICompatBackend


@pytest.fixture
def backend(llama_server: str):
    backend = make_backend(Settings(env="dev", llm_backend="openai", llm_base_url=llama_server))
    assert isinstance(backend, OpenAICompatBackend)
    yield backend
    backend.close()


def test_answer_streams_token_by_token(backend: OpenAICompatBackend) -> None:
    tokens: list[str] = []
    params = LlmParams(messages=[{"role": "user", "content": "Name three colours."}], max_tokens=24, temperature=0.0)
    result = backend.generate(params, on_token=tokens.append, checkpoint=lambda: None)

    assert len(tokens) > 1
    assert result.text == "".join(tokens)
    assert result.text.strip()
    assert result.finish_reason in {"stop", "length"}
    assert result.model == "smollm2-135m-instruct"
    # llama-cpp-python's server ignores stream_options.include_usage, so there is no usage chunk:
    # completion tokens are the streamed chunks (one token each there), and the usage says so.
    assert result.usage == LlmUsage(None, len(tokens), None, source="stream_chunks")


def test_max_tokens_ends_the_answer_with_length(backend: OpenAICompatBackend) -> None:
    tokens: list[str] = []
    params = LlmParams(prompt="Write a long story about the sea.", max_tokens=3, temperature=0.0)
    result = backend.generate(params, on_token=tokens.append, checkpoint=lambda: None)

    assert result.finish_reason == "length"
    assert 1 <= len(tokens) <= 3


def test_cancel_mid_stream_stops_and_the_backend_stays_usable(backend: OpenAICompatBackend) -> None:
    tokens: list[str] = []

    def checkpoint() -> None:
        if len(tokens) == 2:
            raise JobCancelled()

    params = LlmParams(prompt="Count from one to fifty in words.", max_tokens=200, temperature=0.0)
    with pytest.raises(JobCancelled):
        backend.generate(params, on_token=tokens.append, checkpoint=checkpoint)
    assert len(tokens) == 2

    again = backend.generate(LlmParams(prompt="Say yes.", max_tokens=4, temperature=0.0),
                             on_token=lambda _: None, checkpoint=lambda: None)
    assert again.finish_reason in {"stop", "length"}

