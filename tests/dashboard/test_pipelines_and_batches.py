"""The dashboard's Pipelines and Batches views, in headless Chromium against the real platform
(Tesseract, llama.cpp): a pipeline's page shows each step's jobs reach succeeded live and the
result; a batch made through the Files and Batches APIs shows its counts, and its output file
downloads through the page (fetched with the key in a header, saved from a Blob)."""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import TRACE_TEMPLATE, Site
from tests.support.browser import sign_in
from tests.support.documents import pdf_document

pytestmark = pytest.mark.slow

LIVE = 180_000  # ms: a bound for the platform to reach the state a test waits for (shared CI machines)
STEPS = {"steps": [
    {"type": "ocr", "languages": "eng"},
    {"type": "llm", "name": "gist", "per_page": True, "max_tokens": 4, "temperature": 0,
     "prompt": "In three words, what is this page about?\n{text}"},
    {"type": "llm", "name": "title", "max_tokens": 4, "temperature": 0,
     "prompt": "Give a title to a document with these pages:\n{results}"},
]}


def test_a_pipeline_page_shows_each_steps_jobs_reach_succeeded_live_and_the_result(page: Page, site: Site):
    site.use_llm_worker("none")  # the pipeline waits in the queues until the page is watching
    platform = site.platform
    created = platform.submit_pipeline(pdf_document(2).data, STEPS, "two.pdf", tenant="bob").json()
    pipeline_id = created["id"]

    sign_in(page, platform, "bob", "/#/pipelines")
    row = page.locator(f"#pipelines-table tr[data-pipeline-id='{pipeline_id}']")
    expect(row.locator(".badge")).to_have_text("queued")
    expect(row).to_contain_text("0 of 4 jobs · 0 of 3 steps · 0 of 2 pages")
    expect(row).to_contain_text("ocr → gist → title")
    row.get_by_role("link").click()
    expect(page.locator("#pipeline-id")).to_have_text(pipeline_id)
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    expect(page.get_by_role("button", name="Retry")).to_be_hidden()
    steps = page.locator("#pipeline-steps section.step")
    expect(steps).to_have_count(3)
    gist = page.locator("section.step[data-step='gist'] tbody tr")
    expect(gist).to_have_count(2)
    expect(gist.nth(1).get_by_role("rowheader")).to_have_text("2")  # one job per page
    # Record every job state the page shows, to tell that they moved while the page stayed open.
    page.evaluate("""() => {
        window.noReload = true;
        window.seen = new Set();
        const note = () => document.querySelectorAll('#pipeline-steps tr[data-job-id]').forEach(
            (tr) => window.seen.add(tr.dataset.jobId + ' ' + tr.querySelector('.badge').textContent));
        note();
        new MutationObserver(note).observe(document.getElementById('pipeline-steps'), {subtree: true, childList: true});
    }""")

    ocr = site.factory.start_worker("ocr", site.env)
    try:
        site.use_llm_worker("working")
        expect(page.locator("#pipeline-state")).to_have_text("succeeded", timeout=LIVE)
    finally:
        ocr.stop()

    done = platform.pipeline(pipeline_id, "bob")
    jobs = [job["id"] for step in done["steps"] for job in step["jobs"]]
    assert len(jobs) == 4
    for job_id in jobs:
        expect(page.locator(f"#pipeline-steps tr[data-job-id='{job_id}'] .badge")).to_have_text("succeeded")
    # Each job was shown waiting or queued first, then succeeded, on the same page (no reload).
    seen = [entry.split(" ") for entry in page.evaluate("[...window.seen]")]
    for job_id in jobs:
        shown = {state for seen_id, state in seen if seen_id == job_id}
        assert "succeeded" in shown and shown & {"waiting", "queued"}, (job_id, shown)
    assert page.evaluate("window.noReload") is True
    expect(page.locator("#pipeline-result-text")).to_have_text(done["result"]["text"])
    expect(page.locator("#pipeline-progress-text")).to_have_text("4 of 4 jobs · 3 of 3 steps · 2 of 2 pages")
    expect(page.locator("#pipeline-trace-link")).to_have_attribute(
        "href", TRACE_TEMPLATE.replace("{trace_id}", done["trace_id"]))
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    expect(page.get_by_role("button", name="Retry")).to_be_hidden()

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing pushes the page sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 900})

    # Each step's job is a job like any other: its link opens the job page.
    page.locator(f"#pipeline-steps tr[data-job-id='{jobs[1]}']").get_by_role("link").click()
    expect(page.locator("#job-id")).to_have_text(jobs[1])
    expect(page.locator("#job-state")).to_have_text("succeeded")
    page.go_back()  # a finished pipeline's page, opened afresh, shows its result (the stream replays it)
    expect(page.locator("#pipeline-state")).to_have_text("succeeded")
    expect(page.locator("#pipeline-result-text")).to_have_text(done["result"]["text"])


def test_a_batch_shows_its_counts_and_its_output_file_downloads_through_the_page(page: Page, site: Site):
    site.use_llm_worker("working")
    platform = site.platform
    lines = [{"custom_id": f"q-{n}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "smollm2-135m-instruct", "max_tokens": 3,
                       "messages": [{"role": "user", "content": f"Count to {n}."}]}} for n in range(3)]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = httpx.post(f"{platform.gateway.url}/v1/files", headers=platform.headers("bob"), timeout=30,
                          files={"file": ("questions.jsonl", data, "application/jsonl")}, data={"purpose": "batch"})
    assert uploaded.status_code == 200, uploaded.text
    created = httpx.post(f"{platform.gateway.url}/v1/batches", headers=platform.headers("bob"), timeout=30, json={
        "input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h",
        "metadata": {"project": "dashboard-test"}})
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))

    sign_in(page, platform, "bob")
    page.get_by_role("navigation").get_by_role("link", name="Batches").click()
    row = page.locator(f"#batches-table tr[data-batch-id='{batch_id}']")
    expect(row.locator(".badge")).to_have_text("completed", timeout=LIVE)  # the list refreshes itself
    expect(row.locator(".counts")).to_have_text("3 of 3 done")
    row.get_by_role("link").click()

    expect(page.locator("#batch-id")).to_have_text(batch_id)
    batch = httpx.get(f"{platform.gateway.url}/v1/batches/{batch_id}", headers=platform.headers("bob"), timeout=10).json()
    assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    expect(page.locator("#batch-counts")).to_contain_text("Total3Completed3Failed0")
    expect(page.locator("#batch-fields")).to_contain_text("projectdashboard-test")
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()  # it has ended
    expect(page.get_by_role("button", name="Download the error file")).to_have_count(0)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the output file").click()
    download = info.value
    assert download.suggested_filename == f"{batch_id}.output.jsonl"
    output = [json.loads(line) for line in open(download.path(), encoding="utf-8")]
    assert sorted(line["custom_id"] for line in output) == ["q-0", "q-1", "q-2"]
    assert all(line["response"]["status_code"] == 200 for line in output)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("link", name="← Batches").click()
    expect(row).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    key = platform.keys["bob"]
    assert not [u for u in urls if key in u]


def test_a_running_batch_can_be_cancelled_from_its_page(page: Page, site: Site):
    site.use_llm_worker("none")  # its lines wait in the queue: it stays in progress
    platform = site.platform
    line = {"custom_id": "only", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "smollm2-135m-instruct", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]}}
    uploaded = httpx.post(f"{platform.gateway.url}/v1/files", headers=platform.headers("bob"), timeout=30,
                          files={"file": ("one.jsonl", json.dumps(line).encode() + b"\n", "application/jsonl")},
                          data={"purpose": "batch"}).json()
    batch_id = httpx.post(f"{platform.gateway.url}/v1/batches", headers=platform.headers("bob"), timeout=30, json={
        "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}).json()["id"]

    sign_in(page, platform, "bob", f"/#/batches/{batch_id}")
    expect(page.locator("#batch-status")).to_have_text("in_progress")
    expect(page.locator("#batch-progress-text")).to_have_text("0 of 1 done")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#batch-status")).to_have_text("cancelled", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
