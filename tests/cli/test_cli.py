"""`offload` against the real platform: submit and follow, results to stdout or files, status,
cancel, retry, tables, and a clear message with a distinct exit code for each kind of error."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx

from tests.cli.conftest import Cli
from tests.support.documents import small_png
from tests.support.platform import Platform

SUBMITTED = re.compile(r"submitted (?:llm|ocr) job ([0-9a-f-]{36})")


def submitted_ids(stderr: str) -> list[str]:
    return SUBMITTED.findall(stderr)


def test_submit_llm_wait_streams_the_text_then_exits_0(offload: Cli, platform: Platform):
    run = offload("submit", "llm", "-", "--max-tokens", "24", "--temperature", "0", "--wait", "--stream",
                  input="Name three colours.")
    assert run.returncode == 0, run.stderr
    [job_id] = submitted_ids(run.stderr)
    text = platform.result(job_id)["text"]
    assert run.stdout == text + "\n"  # streamed token by token, then one final newline
    assert f"{job_id[:8]} Name three colours.: running (attempt 1)" in run.stderr
    assert re.search(rf"{job_id[:8]} Name three colours\.: succeeded in [\d.]+s", run.stderr)


def test_submit_prints_the_id_and_wait_writes_the_result_to_a_file(offload: Cli, platform: Platform, tmp_path: Path):
    run = offload("submit", "llm", "Say hi.", "-n", "8", "--priority", "high")
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    assert str(uuid.UUID(job_id)) == job_id  # stdout carries the id alone, for scripts

    out = tmp_path / "answer.txt"
    waited = offload("wait", job_id, "--no-stream", "--output", str(out))
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == ""
    assert out.read_text() == platform.result(job_id)["text"] + "\n"

    status = offload("status", job_id, "--json")
    assert json.loads(status.stdout)["state"] == "succeeded" and json.loads(status.stdout)["priority"] == "high"
    shown = offload("status", job_id)
    assert "succeeded" in shown.stdout and "1 of 5" in shown.stdout
    result = offload("result", job_id, "--json")
    assert json.loads(result.stdout) == platform.result(job_id)


def test_submit_ocr_prints_one_id_per_file_and_jobs_lists_them(offload: Cli, tmp_path: Path):
    files = []
    for name in ("invoice.png", "letter.png"):
        (tmp_path / name).write_bytes(small_png())
        files.append(str(tmp_path / name))
    run = offload("submit", "ocr", *files, "--priority", "low")
    assert run.returncode == 0, run.stderr
    ids = run.stdout.split()
    assert len(ids) == 2 and ids == submitted_ids(run.stderr)
    assert offload("wait", *ids, "--json").returncode == 0

    listed = json.loads(offload("jobs", "--type", "ocr", "--state", "succeeded", "--json", "--limit", "200").stdout)
    mine = {j["id"]: j for j in listed["jobs"] if j["id"] in ids}
    assert set(mine) == set(ids)
    assert {j["params"]["filename"] for j in mine.values()} == {"invoice.png", "letter.png"}
    assert all(j["priority"] == "low" for j in mine.values())
    table = offload("jobs", "--type", "ocr").stdout
    assert all(job_id in table for job_id in ids) and "succeeded" in table


def test_wait_timeout_then_cancel_then_cancelling_again_is_refused(offload: Cli):
    job_id = offload("submit", "llm", "Write a long story about a lighthouse keeper.", "-n", "400").stdout.strip()
    impatient = offload("wait", job_id, "--wait-timeout", "0.01")
    assert impatient.returncode == 5
    assert f"follow it with: offload wait {job_id}" in impatient.stderr
    cancelled = offload("cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stderr or "cancel requested" in cancelled.stderr
    waited = offload("wait", job_id)
    assert waited.returncode == 1 and "cancelled" in waited.stderr
    again = offload("cancel", job_id)
    assert again.returncode == 3
    assert "Job already finished" in again.stderr and "HTTP 409" in again.stderr


def test_a_failed_job_exits_1_with_its_error_and_retry_requeues_it(offload: Cli, platform: Platform):
    # A probe job (admin keys) told to fail for good: accepted at submit, failed by the worker.
    job_id = platform.http_post("/v1/jobs/probe", tenant="ops", json={"fail": "permanent"}).json()["id"]
    run = offload("wait", job_id, tenant="ops")
    assert run.returncode == 1
    assert "failed" in run.stderr and "asked to fail" in run.stderr and run.stdout == ""

    retried = offload("retry", job_id, tenant="ops")
    assert retried.returncode == 0, retried.stderr
    assert f"{job_id}: requeued" in retried.stderr
    waited = offload("wait", job_id, tenant="ops")
    assert waited.returncode == 1 and "asked to fail" in waited.stderr
    states = [(data["state"], data.get("requeued", False)) for _, kind, data in platform.events(job_id, tenant="ops")
              if kind == "state"]
    assert states == [("queued", False), ("running", False), ("failed", False),
                      ("queued", True), ("running", False), ("failed", False)]


def test_queues_shows_every_queue_and_the_replicas_wanted(offload: Cli, platform: Platform):
    table = offload("queues")
    assert table.returncode == 0, table.stderr
    for queue in ("ocr.high", "ocr.normal", "ocr.low", "llm.high", "llm.normal", "llm.low"):
        assert queue in table.stdout
    assert "WANTED REPLICAS" in table.stdout
    stats = json.loads(offload("queues", "--json").stdout)
    live = httpx.get(f"{platform.status.url}/v1/queues", headers=platform.headers(), timeout=10).json()
    assert set(stats["queues"]) == set(live["queues"])
    assert isinstance(stats["workers"]["llm"]["desired_replicas"], int)


def test_errors_are_one_clear_line_with_an_exit_code_per_kind(offload: Cli, platform: Platform):
    bad_key = offload("jobs", tenant="not-a-valid-key")
    assert bad_key.returncode == 3
    assert bad_key.stderr.strip() == ("error: the API key is not valid (HTTP 401); "
                                      "check --api-key / OFFLOAD_API_KEY")

    no_key = offload("queues", env={"OFFLOAD_API_KEY": ""})
    assert no_key.returncode == 2 and "no API key" in no_key.stderr

    missing = offload("status", str(uuid.uuid4()))
    assert missing.returncode == 3 and "Job not found" in missing.stderr

    malformed = offload("status", "not-an-id")
    assert malformed.returncode == 2 and "not a job id" in malformed.stderr

    unreachable = offload("queues", env={"OFFLOAD_STATUS_URL": "http://127.0.0.1:9"})
    assert unreachable.returncode == 4 and "cannot reach http://127.0.0.1:9" in unreachable.stderr

    too_big = offload("submit", "llm", "Hi", "--max-tokens", "100000")
    assert too_big.returncode == 3 and "max_tokens" in too_big.stderr

    usage = offload("submit", "llm")
    assert usage.returncode == 2 and "Missing argument" in usage.stderr
    for run in (bad_key, no_key, missing, malformed, unreachable, too_big):
        assert "Traceback" not in run.stderr


def test_submit_with_delay_schedules_the_job_and_says_when(offload: Cli, platform: Platform):
    done = offload("submit", "llm", "Say hi.", "--max-tokens", "2", "--delay", "60")
    assert done.returncode == 0, done.stderr
    job = platform.job(done.stdout.strip())
    assert job["state"] == "scheduled" and job["params"]["delay_seconds"] == 60
    assert "scheduled for" in done.stderr
    refused = offload("submit", "llm", "Say hi.", "--at", "2030-01-01T10:00:00")
    assert refused.returncode != 0 and "offset" in refused.stderr
