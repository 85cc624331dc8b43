"""LLM jobs through the whole platform, on both backends, streaming tokens over SSE."""

from __future__ import annotations


PROMPT = {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 24, "temperature": 0}


def _assert_streamed_and_finished(platform, job_id: str) -> dict:
    events = platform.events(job_id)
    tokens = [data["text"] for _, kind, data in events if kind == "token"]
    states = [data["state"] for _, kind, data in events if kind == "state"]
    assert states[0] == "queued" and states[-1] == "succeeded", states
    assert len(tokens) >= 2, "tokens should arrive as several events while the model generates"
    ids = [event_id for event_id, _, _ in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    result = platform.result(job_id)
    assert result["text"] == "".join(tokens)
    assert result["finish_reason"] in ("stop", "length")
    return result


def test_llamacpp_backend_streams_tokens_and_reports_usage(platform):
    r = platform.submit_llm(PROMPT)
    assert r.status_code == 202, r.text
    result = _assert_streamed_and_finished(platform, r.json()["id"])
    usage = result["usage"]
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert result["model"] == "smollm2-135m-instruct"


def test_openai_backend_against_a_real_llama_cpp_server(platform_factory, llama_server):
    platform = platform_factory.start(workers=("llm",), worker_env={"llm": {
        "OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": llama_server}})
    r = platform.submit_llm({**PROMPT, "model": "smollm2-135m-instruct"})
    assert r.status_code == 202, r.text
    result = _assert_streamed_and_finished(platform, r.json()["id"])
    assert result["usage"]["completion_tokens"] > 0


def test_sse_resumes_after_last_event_id_without_repeats(platform):
    job_id = platform.submit_llm(PROMPT).json()["id"]
    everything = platform.events(job_id)
    cut = len(everything) // 2
    resumed = platform.events(job_id, last_event_id=everything[cut - 1][0])
    assert resumed == everything[cut:]
