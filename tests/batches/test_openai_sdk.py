"""The official `openai` SDK, unmodified, with base_url at a real gateway: files.create ->
batches.create -> batches.retrieve (polled) -> files.content, for chat and embedding batches; a
malformed file refused with its line numbers; a batch cancelled half-way."""

from __future__ import annotations

import json
import time

import openai
import pytest
from openai import OpenAI

from tests.batches.conftest import batch_env, chat_line, embed_line, jsonl

ENDED = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture(scope="module")
def platform(sim, redis_server, tmp_path_factory):
    from tests.support.platform import PlatformFactory
    from tests.support.processes import TEST_DB

    redis_server.flush(TEST_DB)
    factory = PlatformFactory(redis_url=redis_server.db_url(TEST_DB), log_dir=tmp_path_factory.mktemp("sdk"))
    try:
        yield factory.start(workers=("llm",), env=batch_env(sim, OFFLOAD_BATCH_MAX_IN_FLIGHT_PER_TENANT="8"))
    finally:
        factory.stop_all()


@pytest.fixture
def client(platform) -> OpenAI:
    return OpenAI(base_url=f"{platform.gateway.url}/v1", api_key=platform.keys["alice"], max_retries=0, timeout=60)


def wait_for_end(client: OpenAI, batch_id: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ENDED:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status} after {timeout} s: {batch.request_counts}"
        time.sleep(0.2)


def read_jsonl(client: OpenAI, file_id: str) -> list[dict]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_50_chat_lines_through_the_sdk_answer_every_custom_id(client, sim):
    lines = [chat_line(n) for n in range(50)]
    uploaded = client.files.create(file=("chat.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.object == "file" and uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(lines))
    assert client.files.retrieve(uploaded.id).filename == "chat.jsonl"
    assert client.files.content(uploaded.id).content == jsonl(lines)

    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"project": "sdk-test"})
    assert batch.status == "in_progress" and batch.request_counts.total == 50
    assert batch.metadata == {"project": "sdk-test"}
    done = wait_for_end(client, batch.id)

    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (50, 50, 0)
    assert done.error_file_id is None and done.completed_at >= done.created_at
    output = read_jsonl(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in output) == sorted(f"chat-{n}" for n in range(50))
    for line in output:
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == "sim-model"
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["choices"][0]["message"]["content"] == " t0 t1 t2 t3"  # the simulator's 4 tokens
        assert body["usage"]["completion_tokens"] == 4
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert [b.id for b in client.batches.list(limit=5).data][0] == batch.id


def test_50_embedding_lines_through_the_sdk_with_the_real_model(client):
    lines = [embed_line(n) for n in range(50)]
    uploaded = client.files.create(file=("embed.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h",
                                  metadata={"priority": "normal"})
    done = wait_for_end(client, batch.id)

    assert done.status == "completed" and done.request_counts.completed == 50, done
    by_id = {line["custom_id"]: line for line in read_jsonl(client, done.output_file_id)}
    assert set(by_id) == {f"emb-{n}" for n in range(50)}
    vectors = {cid: line["response"]["body"]["data"][0]["embedding"] for cid, line in by_id.items()}
    assert {len(v) for v in vectors.values()} == {384}
    assert by_id["emb-7"]["response"]["body"]["object"] == "list"
    assert vectors["emb-1"] != vectors["emb-2"]


def test_a_malformed_file_is_refused_with_its_line_numbers_and_nothing_runs(client, platform):
    good = [chat_line(n) for n in range(6)]
    text = jsonl(good).decode().splitlines()
    text[2] = '{"custom_id": "chat-2", "method": "POST", "url": '  # line 3: cut off
    text[4] = json.dumps(chat_line(4, url="/v1/embeddings"))  # line 5: another endpoint
    text[5] = json.dumps(chat_line(0))  # line 6: custom_id of line 1 again
    uploaded = client.files.create(file=("bad.jsonl", ("\n".join(text) + "\n").encode()), purpose="batch")
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    problem = refused.value.body
    assert [e["line"] for e in problem["errors"]] == [3, 5, 6]
    assert "line 3: not valid JSON" in problem["detail"] and "url must be" in problem["detail"]
    assert "custom_id 'chat-0' is used by an earlier line" in problem["detail"]
    assert client.batches.list().data == [] or all(b.input_file_id != uploaded.id for b in client.batches.list().data)


def test_cancel_mid_batch_leaves_cancelled_with_partial_output(client):
    # 40 lines of ~1.5 s each, at most 8 at once: the batch takes ~8 s unless cancelled.
    lines = [chat_line(n, max_tokens=150) for n in range(40)]
    uploaded = client.files.create(file=("slow.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 60
    while client.batches.retrieve(batch.id).request_counts.completed < 3:
        assert time.monotonic() < deadline, "no line finished in 60 s"
        time.sleep(0.1)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    done = wait_for_end(client, batch.id, timeout=60)

    assert done.status == "cancelled" and done.cancelled_at is not None
    counts = done.request_counts
    assert 3 <= counts.completed < 40 and counts.total == 40
    output = read_jsonl(client, done.output_file_id)
    assert len(output) == counts.completed
    assert all(line["response"]["status_code"] == 200 for line in output)
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)
