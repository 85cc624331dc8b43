"""The in-process llama.cpp backend with the bundled SmolLM2-135M-Instruct model."""

from __future__ import annotations

import pytest

from offload_core.errors import JobCancelled, PermanentJobError
from offload_core.llm.request import LlmParams
from offload_core.settings import Settings
from offload_worker_llm.backends import make_backend
from offload_worker_llm.backends.llamacpp import LlamaCppBackend, bundled_model_path

QUESTION = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is the capital of France?"}]


def generate(backend: LlamaCppBackend, params: LlmParams, checkpoint=lambda: None):
    tokens: list[str] = []
    result = backend.generate(params, on_token=tokens.append, checkpoint=checkpoint)
    return result, tokens


def test_bundled_model_is_found_without_importing_its_package() -> None:
    path = bundled_model_path()
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000


def test_factory_builds_the_llamacpp_backend() -> None:
    assert isinstance(make_backend(Settings(env="dev", llm_backend="llamacpp")), LlamaCppBackend)


def test_answer_streams_with_honest_usage(llamacpp_backend: LlamaCppBackend) -> None:
    result, tokens = generate(llamacpp_backend, LlmParams(messages=QUESTION, max_tokens=32, temperature=0.0))

    assert len(tokens) > 1
    assert result.text == "".join(tokens)
    assert result.finish_reason in {"stop", "length"}
    assert result.model == "smollm2-135m-instruct"
    usage = result.usage
    assert usage.prompt_tokens is not None and usage.prompt_tokens > 10  # system + user + chat template
    assert usage.completion_tokens is not None and usage.completion_tokens >= len(tokens) - 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_prompt_tokens_grow_with_the_prompt(llamacpp_backend: LlamaCppBackend) -> None:
    short, _ = generate(llamacpp_backend, LlmParams(prompt="Hi", max_tokens=1, temperature=0.0))
    longer, _ = generate(llamacpp_backend, LlmParams(prompt="Hi" + " there" * 20, max_tokens=1, temperature=0.0))
    assert longer.usage.prompt_tokens - short.usage.prompt_tokens == 20  # " there" is one token


def test_max_tokens_is_respected(llamacpp_backend: LlamaCppBackend) -> None:
    result, tokens = generate(llamacpp_backend, LlmParams(prompt="Write a long story about the sea.", max_tokens=4, temperature=0.0))
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 4
    assert 1 <= len(tokens) <= 4


def test_same_answer_at_temperature_zero(llamacpp_backend: LlamaCppBackend) -> None:
    params = LlmParams(messages=QUESTION, max_tokens=16, temperature=0.0)
    assert generate(llamacpp_backend, params)[0].text == generate(llamacpp_backend, params)[0].text


def test_cancel_mid_stream_stops_generation(llamacpp_backend: LlamaCppBackend) -> None:
    tokens: list[str] = []

    def checkpoint() -> None:
        if len(tokens) == 2:
            raise JobCancelled()

    params = LlmParams(prompt="Count from one to fifty in words.", max_tokens=200, temperature=0.0)
    with pytest.raises(JobCancelled):
        llamacpp_backend.generate(params, on_token=tokens.append, checkpoint=checkpoint)
    assert len(tokens) == 2

    after, _ = generate(llamacpp_backend, LlmParams(prompt="Say yes.", max_tokens=4, temperature=0.0))
    assert after.finish_reason in {"stop", "length"}


def test_another_model_name_is_refused(llamacpp_backend: LlamaCppBackend) -> None:
    with pytest.raises(PermanentJobError, match="'gpt-4o' is not served here; models: smollm2-135m-instruct"):
        generate(llamacpp_backend, LlmParams(prompt="x", model="gpt-4o"))


def test_json_object_response_format_constrains_the_answer_to_json(llamacpp_backend: LlamaCppBackend) -> None:
    params = LlmParams.model_validate({"prompt": "Describe a cat as JSON with a name and an age.", "max_tokens": 40,
                                       "temperature": 0.0, "response_format": {"type": "json_object"}})
    result, _ = generate(llamacpp_backend, params)
    assert result.text.lstrip().startswith("{")  # the grammar allows nothing else first
    free, _ = generate(llamacpp_backend, params.model_copy(update={"response_format": None}))
    assert not free.text.lstrip().startswith("{")


def test_prompt_beyond_the_context_is_permanent() -> None:
    backend = LlamaCppBackend(Settings(env="dev", llm_backend="llamacpp", llm_context_tokens=256))
    try:
        with pytest.raises(PermanentJobError, match="context holds 256 tokens"):
            generate(backend, LlmParams(prompt="apple " * 400, max_tokens=8))
    finally:
        backend.close()


def test_unloadable_model_is_a_retryable_worker_problem(tmp_path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"GGUF but not really")
    backend = LlamaCppBackend(Settings(env="dev", llm_backend="llamacpp", llm_model_path=str(bogus)))
    from offload_core.errors import RetryableJobError

    with pytest.raises(RetryableJobError, match="could not load"):
        generate(backend, LlmParams(prompt="x"))
