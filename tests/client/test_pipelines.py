"""Pipelines through both clients and the CLI, against the real platform (Tesseract, llama.cpp):
submit a 2-page PDF with a per-page step and a reduce, follow it, read its result; cancel."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from offload_client import AsyncOffloadClient, InvalidRequestError, NotFoundError, OffloadClient, PipelineEvent
from tests.support.documents import pdf_document
from tests.support.platform import Platform
from tests.support.processes import VENV_BIN

STEPS = [
    {"type": "ocr", "languages": "eng"},
    {"type": "llm", "name": "gist", "per_page": True, "max_tokens": 6, "temperature": 0,
     "prompt": "In three words, what is this page about?\n{text}"},
    {"type": "llm", "name": "title", "max_tokens": 6, "temperature": 0,
     "prompt": "Give a title to a document with these pages:\n{results}"},
]


@pytest.fixture(scope="module")
def two_pages() -> bytes:
    return pdf_document(2).data


def test_a_pipeline_is_followed_to_its_end_and_its_steps_are_ordinary_jobs(client: OffloadClient, two_pages: bytes):
    created = client.submit_pipeline(two_pages, STEPS, filename="two.pdf", priority="high")
    assert created.pages == 2 and created.progress["jobs"] == 1 + 2 + 1 and created.trace_id
    assert [s.name for s in created.steps] == ["ocr", "gist", "title"]

    seen: list[PipelineEvent] = []
    done = client.wait_pipeline(created.id, timeout=240, on_event=seen.append)

    assert done.state == "succeeded" and done.progress["pages_done"] == 2, done
    assert isinstance(done.result["text"], str) and done.result["text"].strip()
    # The stream told the whole story: the pipeline first, every job's success, the end last.
    assert seen[0].kind == "pipeline" and seen[-1].kind == "end" and seen[-1].pipeline_state() == "succeeded"
    moved = {e.data["job"] for e in seen if e.kind == "state" and e.data["state"] == "succeeded"}
    assert moved == {j.id for s in done.steps for j in s.jobs}
    # Each step's job is a job like any other: its own record and result.
    page_two = done.steps[1].jobs[1]
    assert page_two.page == 2 and client.get_job(page_two.id).state == "succeeded"
    assert client.result(done.steps[0].jobs[0].id)["pages"][1]["page"] == 2
    assert created.id in {p.id for p in client.list_pipelines(limit=100).pipelines}


def test_a_bad_pipeline_is_refused_with_the_step_and_nothing_is_made(client: OffloadClient, two_pages: bytes):
    with pytest.raises(InvalidRequestError) as refused:
        client.submit_pipeline(two_pages, [STEPS[0], {"type": "llm", "prompt": "no placeholder here"}])
    assert refused.value.status == 422 and "step 2" in str(refused.value.detail)
    with pytest.raises(NotFoundError):
        client.get_pipeline("00000000-0000-4000-8000-000000000000")


def test_the_async_client_cancels_a_pipeline_and_waits_for_its_end(async_client: AsyncOffloadClient,
                                                                   two_pages: bytes):
    async def scenario():
        async with async_client as client:
            created = await client.submit_pipeline(two_pages, STEPS)
            cancelled = await client.cancel_pipeline(created.id)
            assert cancelled.state in ("cancelling", "cancelled")
            return await client.wait_pipeline(created.id, timeout=120)

    done = asyncio.run(scenario())
    assert done.state == "cancelled" and done.result is None
    assert done.steps[-1].jobs[0].state == "cancelled"


def test_the_cli_submits_waits_and_prints_the_last_steps_text(platform: Platform, two_pages: bytes, tmp_path: Path):
    document = tmp_path / "two.pdf"
    document.write_bytes(two_pages)
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps({"steps": STEPS}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update({"OFFLOAD_URL": platform.gateway.url, "OFFLOAD_STATUS_URL": platform.status.url,
                "OFFLOAD_API_KEY": platform.keys["alice"], "COLUMNS": "160"})

    def offload(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "offload"), *args], env=env, capture_output=True, text=True,
                              timeout=300)

    run = offload("pipeline", "submit", str(document), "--steps", str(steps), "--wait")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() and "succeeded" in run.stderr
    pipeline_id = run.stderr.split("pipeline ", 1)[1].split()[0]
    shown = offload("pipeline", "status", pipeline_id)
    assert shown.returncode == 0 and "gist" in shown.stdout and "2/2" in shown.stdout, shown.stdout
    bad = offload("pipeline", "submit", str(document), "--steps", '[{"type": "llm", "prompt": "{text}"}, {"type": "llm", "prompt": "{text}"}]')
    assert bad.returncode == 3 and "first step must be" in bad.stderr, bad.stderr
