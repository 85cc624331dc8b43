"""The OpenAI-compatible backend against a scripted HTTP peer: parsing, retries and failures."""

from __future__ import annotations

import json

import pytest

from offload_core.errors import JobCancelled, PermanentJobError, RetryableJobError
from offload_core.llm.request import LlmParams
from offload_core.settings import Settings
from offload_worker_llm.backends import LlmUsage
from offload_worker_llm.backends.openai_compat import OpenAICompatBackend
from tests.worker_llm.llm_peer import Reply, ScriptedPeer, chunk, free_port, good_stream

API_KEY = "sk-test-0123456789abcdef"
PARAMS = LlmParams(prompt="Say hi", max_tokens=16, temperature=0.0)


def make_backend(base_url: str, sleeps: list[float], **overrides: object) -> OpenAICompatBackend:
    values: dict[str, object] = {
        "llm_base_url": base_url,
        "llm_api_key": API_KEY,
        "llm_max_http_attempts": 3,
        "retry_backoff_base_seconds": 0.05,
        "retry_backoff_max_seconds": 0.2,
        "llm_connect_timeout_seconds": 2,
        "llm_request_timeout_seconds": 5,
    }
    settings = Settings(env="dev", **(values | overrides))
    # Waits are recorded instead of slept: the tests check how long the backend chose to wait.
    return OpenAICompatBackend(settings, sleep=sleeps.append)


def run(backend: OpenAICompatBackend, params: LlmParams = PARAMS):
    tokens: list[str] = []
    result = backend.generate(params, on_token=tokens.append, checkpoint=lambda: None)
    return result, tokens


def test_streamed_chunks_become_tokens_text_and_usage(peer: ScriptedPeer) -> None:
    peer.script = [good_stream("Hel", "lo", " world")]
    result, tokens = run(make_backend(peer.base_url, []))

    assert tokens == ["Hel", "lo", " world"]
    assert result.text == "Hello world"
    assert result.finish_reason == "stop"
    assert result.usage == LlmUsage(prompt_tokens=7, completion_tokens=3, total_tokens=10)
    assert result.model == "peer-model"
    [request] = peer.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["model"] == "smollm2-135m-instruct"  # settings.llm_model when the job names none
    assert request.body["messages"] == [{"role": "user", "content": "Say hi"}]
    assert request.body["max_tokens"] == 16


def test_the_model_map_routes_a_name_to_its_served_model_with_its_key(peer: ScriptedPeer) -> None:
    models = (f"smollm2-135m-instruct: {{}}\n"
              f"big: {{base_url: '{peer.base_url}', served_model: org/big-model:v2, api_key_env: BIG_KEY}}\n")
    peer.script = [good_stream("ok")]
    import os

    os.environ["BIG_KEY"] = "sk-big-0123456789"
    try:
        run(make_backend("http://127.0.0.1:9/v1", [], llm_models=models), LlmParams(prompt="x", model="big"))
    finally:
        del os.environ["BIG_KEY"]
    [request] = peer.requests
    assert request.body["model"] == "org/big-model:v2"
    assert request.headers["authorization"] == "Bearer sk-big-0123456789"


def test_a_model_not_in_the_map_never_goes_upstream(peer: ScriptedPeer) -> None:
    peer.script = [good_stream("ok")]
    with pytest.raises(PermanentJobError, match="'other-model' is not served here"):
        run(make_backend(peer.base_url, []), LlmParams(prompt="x", model="other-model"))
    assert peer.requests == []


def test_openai_sampling_parameters_are_passed_through(peer: ScriptedPeer) -> None:
    peer.script = [good_stream("{}")]
    params = LlmParams.model_validate({
        "prompt": "x", "max_tokens": 5, "temperature": 0.3, "top_p": 0.9, "seed": 42, "stop": "END",
        "presence_penalty": 0.5, "frequency_penalty": -0.5,
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}, "strict": True}}})
    run(make_backend(peer.base_url, []), params)
    sent = peer.requests[0].body
    assert {k: sent[k] for k in ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")} == {
        "temperature": 0.3, "top_p": 0.9, "seed": 42, "stop": ["END"], "presence_penalty": 0.5,
        "frequency_penalty": -0.5}
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}, "strict": True}}


def test_stream_without_usage_chunk_counts_chunks_and_says_so(peer: ScriptedPeer) -> None:
    peer.script = [Reply(events=[chunk("a"), chunk("b", finish="length"), "[DONE]"])]
    result, _ = run(make_backend(peer.base_url, []))
    assert result.usage == LlmUsage(None, 2, None, source="stream_chunks")
    assert result.finish_reason == "length"


def test_429_with_retry_after_waits_that_long_then_succeeds(peer: ScriptedPeer) -> None:
    peer.script = [Reply(status=429, headers={"Retry-After": "1"}, json_body={"error": {"message": "slow down"}}),
                   good_stream("fine")]
    sleeps: list[float] = []
    result, tokens = run(make_backend(peer.base_url, sleeps))

    assert tokens == ["fine"]
    assert len(peer.requests) == 2
    assert sum(sleeps) == pytest.approx(1.0)


def test_503_every_time_gives_retryable_error_after_max_attempts(peer: ScriptedPeer) -> None:
    peer.script = [Reply(status=503, headers={"Retry-After": "2"}, json_body={"detail": "overloaded"})]
    sleeps: list[float] = []
    with pytest.raises(RetryableJobError) as caught:
        run(make_backend(peer.base_url, sleeps))

    assert len(peer.requests) == 3
    assert sum(sleeps) == pytest.approx(4.0)  # Retry-After honoured between the three attempts
    assert caught.value.retry_after == 2.0
    assert "overloaded" in caught.value.message


def test_503_without_retry_after_backs_off_within_the_cap(peer: ScriptedPeer) -> None:
    peer.script = [Reply(status=503, json_body={"error": "down"})]
    sleeps: list[float] = []
    with pytest.raises(RetryableJobError) as caught:
        run(make_backend(peer.base_url, sleeps, llm_max_http_attempts=4))

    assert len(peer.requests) == 4
    assert caught.value.retry_after is None
    # Full jitter: attempt n waits at most min(cap, base * 2**(n-1)) = 0.05, 0.1, 0.2 seconds.
    assert sum(sleeps) <= 0.05 + 0.1 + 0.2 + 1e-9


def test_retry_after_beyond_what_a_job_should_wait_is_handed_to_the_runner(peer: ScriptedPeer) -> None:
    peer.script = [Reply(status=429, headers={"Retry-After": "120"}, json_body={"error": {"message": "quota"}})]
    sleeps: list[float] = []
    with pytest.raises(RetryableJobError) as caught:
        run(make_backend(peer.base_url, sleeps))

    assert len(peer.requests) == 1
    assert sleeps == []
    assert caught.value.retry_after == 120.0


def test_400_is_permanent_with_the_servers_message_and_no_secret(peer: ScriptedPeer) -> None:
    peer.script = [Reply(status=400, json_body={"error": {"message": f"bad 'messages' (key {API_KEY} rejected)"}})]
    with pytest.raises(PermanentJobError) as caught:
        run(make_backend(peer.base_url, []))

    assert len(peer.requests) == 1
    assert "bad 'messages'" in caught.value.message
    assert "HTTP 400" in caught.value.message
    assert API_KEY not in caught.value.message


def test_long_error_messages_are_truncated(peer: ScriptedPeer) -> None:
    peer.script = [Reply(status=422, json_body={"detail": "x" * 5000})]
    with pytest.raises(PermanentJobError) as caught:
        run(make_backend(peer.base_url, []))
    assert len(caught.value.message) < 400


def test_connection_refused_is_retryable_after_attempts() -> None:
    sleeps: list[float] = []
    backend = make_backend(f"http://127.0.0.1:{free_port()}/v1", sleeps, llm_max_http_attempts=2)
    with pytest.raises(RetryableJobError) as caught:
        run(backend)
    assert len(sleeps) == 1
    assert "ConnectError" in caught.value.message


def test_stream_cut_off_after_tokens_is_retryable_without_a_second_request(peer: ScriptedPeer) -> None:
    peer.script = [Reply(events=[chunk(role="assistant"), chunk("par"), chunk("tial")], cut_off=True),
                   good_stream("never asked for")]
    tokens: list[str] = []
    backend = make_backend(peer.base_url, [])
    with pytest.raises(RetryableJobError) as caught:
        backend.generate(PARAMS, on_token=tokens.append, checkpoint=lambda: None)

    assert tokens == ["par", "tial"]
    assert len(peer.requests) == 1
    assert "after output had started" in caught.value.message


def test_stream_cut_off_before_any_token_is_retried_in_place(peer: ScriptedPeer) -> None:
    peer.script = [Reply(events=[chunk(role="assistant")], cut_off=True), good_stream("second", " try")]
    result, tokens = run(make_backend(peer.base_url, []))
    assert tokens == ["second", " try"]
    assert len(peer.requests) == 2


def test_stream_ending_without_finish_or_done_after_tokens_is_retryable(peer: ScriptedPeer) -> None:
    peer.script = [Reply(events=[chunk("half")])]
    with pytest.raises(RetryableJobError):
        run(make_backend(peer.base_url, [], llm_max_http_attempts=1))


def test_server_that_does_not_stream_is_refused(peer: ScriptedPeer) -> None:
    peer.script = [Reply(json_body={"choices": [{"message": {"content": "hi"}}]})]
    with pytest.raises(PermanentJobError) as caught:
        run(make_backend(peer.base_url, []))
    assert "event stream" in caught.value.message


def test_cancellation_while_waiting_to_retry_stops_at_once(peer: ScriptedPeer) -> None:
    peer.script = [Reply(status=503, headers={"Retry-After": "3"}, json_body={"error": "busy"})]
    calls = 0

    def checkpoint() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first check is before the request, the second inside the wait
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        make_backend(peer.base_url, []).generate(PARAMS, on_token=lambda _: None, checkpoint=checkpoint)
    assert len(peer.requests) == 1


def test_requests_beyond_the_configured_limits_are_refused_without_a_call(peer: ScriptedPeer) -> None:
    peer.script = [good_stream("x")]
    with pytest.raises(PermanentJobError, match="max_tokens"):
        run(make_backend(peer.base_url, [], llm_max_tokens_limit=8), LlmParams(prompt="x", max_tokens=9))
    with pytest.raises(PermanentJobError, match="characters"):
        run(make_backend(peer.base_url, [], llm_max_prompt_chars=10), LlmParams(prompt="x" * 11))
    assert peer.requests == []


def test_connection_is_reused_across_jobs(peer: ScriptedPeer) -> None:
    peer.script = [good_stream("one"), good_stream("two")]
    backend = make_backend(peer.base_url, [])
    assert run(backend)[0].text == "one"
    assert run(backend)[0].text == "two"
    assert len({r.client_port for r in peer.requests}) == 1


def test_stream_cut_off_after_the_finish_reason_keeps_the_whole_answer(peer: ScriptedPeer) -> None:
    peer.script = [Reply(events=[chunk("all"), chunk(" there", finish="stop")], cut_off=True)]
    result, tokens = run(make_backend(peer.base_url, []))
    assert result.text == "all there"
    assert result.finish_reason == "stop"
    assert len(peer.requests) == 1


def test_error_object_in_the_stream_before_output_is_retried(peer: ScriptedPeer) -> None:
    peer.script = [Reply(events=[json.dumps({"error": {"message": "model crashed"}})]), good_stream("ok")]
    result, _ = run(make_backend(peer.base_url, []))
    assert result.text == "ok"
    assert len(peer.requests) == 2
