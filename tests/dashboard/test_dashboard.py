"""The dashboard, driven in headless Chromium against the real platform: sign in, queues, the
live job page, dead-letter requeue, a phone-width layout, and the screenshot for the docs; and
what an operator runs on: the Workers panel and its warnings, throughput, each job's input and
run time, search by id, bulk requeue and purge with a confirmation, Requeue only where it can
help, OCR text page by page."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from offload_core.queue.routing import ALL_QUEUES
from offload_core.types import JobType

from tests.dashboard.conftest import TRACE_TEMPLATE, Site
from tests.support.browser import sign_in
from tests.support.documents import pdf_document, png_document

pytestmark = pytest.mark.slow

SHORT = {"prompt": "Say hello.", "max_tokens": 4, "temperature": 0}
LONG = {"prompt": "Write a long story about a lighthouse keeper.", "max_tokens": 120, "temperature": 0}
LIVE = 180_000  # ms: a bound for a job to reach the state a test waits for (generous: CI machines are shared)


def queues(platform, tenant="alice") -> dict:
    return httpx.get(f"{platform.status.url}/v1/queues", headers=platform.headers(tenant), timeout=10).json()


def test_sign_in_shows_queues_and_jobs_and_keeps_the_key_out_of_urls(page: Page, site: Site):
    site.use_llm_worker("none")  # jobs stay queued
    platform = site.platform
    ids = [platform.submit_llm(SHORT).json()["id"] for _ in range(2)]
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))

    page.goto(platform.status.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#overview")).to_be_hidden()
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").filter(has_text="refused")).to_be_visible()

    sign_in(page, platform, "alice")

    llm_normal = page.locator("#queues-table tbody tr",
                              has=page.get_by_role("rowheader", name="llm.normal", exact=True))
    stats = queues(platform)
    assert stats["queues"]["llm.normal"]["depth"] >= 2
    expect(llm_normal.locator("td").first).to_have_text(str(stats["queues"]["llm.normal"]["depth"]))
    wanted = stats["workers"]["llm"]["desired_replicas"]
    assert wanted >= 1
    llm_workers = page.locator("#workers-table tbody tr", has=page.get_by_role("rowheader", name="llm", exact=True))
    expect(llm_workers.locator("td.replicas")).to_have_text(str(wanted))
    for job_id in ids:
        expect(page.locator(f"#jobs-table tr[data-job-id='{job_id}']")).to_contain_text("queued")

    page.get_by_label("State", exact=True).select_option("succeeded")
    expect(page.locator("#jobs-empty")).to_be_visible()
    page.get_by_label("State", exact=True).select_option("")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(len(ids))

    # Kept for the tab's session only: a reload stays signed in, nothing else holds the key.
    page.reload()
    expect(page.locator("#queues-table tbody tr")).to_have_count(len(ALL_QUEUES))  # three priorities of each type
    key = platform.keys["alice"]
    assert page.evaluate("sessionStorage.getItem('offload.apiKey')") == key
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    assert urls and not [u for u in urls if key in u]

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('offload.apiKey')") is None


def test_job_page_follows_state_and_streamed_output_live(page: Page, site: Site):
    site.use_llm_worker("none")
    platform = site.platform
    job = platform.submit_llm(LONG).json()
    sign_in(page, platform, "alice", f"/#/jobs/{job['id']}")
    expect(page.locator("#job-state")).to_have_text("queued")
    # Record what the page shows at every change, so the test can tell that the output grew
    # while the job was running, i.e. live, and not only once it had finished.
    page.evaluate("""() => {
        window.noReload = true;
        window.seen = [];
        const note = () => window.seen.push({state: document.getElementById('job-state').textContent,
                                             output: document.getElementById('job-output').textContent.length});
        new MutationObserver(note).observe(document.getElementById('job-view'),
                                           {subtree: true, childList: true, characterData: true});
    }""")

    site.use_llm_worker("working")

    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=LIVE)
    expect(page.locator("#job-history li")).to_have_count(3)
    expect(page.locator("#job-history")).to_contain_text("running · attempt 1")
    result = platform.result(job["id"])
    expect(page.locator("#job-result")).to_have_text(result["text"])
    expect(page.locator("#job-progress-text")).to_have_text("done")
    assert page.evaluate("window.noReload") is True
    seen = page.evaluate("window.seen")
    growing = sorted({s["output"] for s in seen if s["state"] == "running" and s["output"] > 0})
    assert len(growing) >= 2, f"the output did not grow while running: {growing}"
    states = [s["state"] for s in seen if s["state"]]
    assert states.index("running") < states.index("succeeded")

    trace_id = platform.job(job["id"])["trace_id"]
    assert trace_id
    expect(page.locator("#job-trace-link")).to_have_attribute("href", TRACE_TEMPLATE.replace("{trace_id}", trace_id))
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()


def test_admin_requeues_a_dead_job_and_it_runs_again(page: Page, site: Site):
    platform = site.platform
    site.use_llm_worker("failing")
    job_id = platform.submit_llm(SHORT).json()["id"]
    assert platform.wait(job_id)["state"] == "dead"
    site.use_llm_worker("working")

    # Another tenant does not see it.
    sign_in(page, platform, "bob")
    expect(page.locator("#dead-empty")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, platform, "ops")
    row = page.locator(f"#dead-table tr[data-job-id='{job_id}']")
    expect(row).to_contain_text(platform.job(job_id)["error"]["message"])
    dead_before = queues(platform, "ops")["dead"]
    expect(page.locator("#stat-dead")).to_have_text(str(dead_before))
    row.get_by_role("button", name=f"Requeue job {job_id}").click()

    expect(page.locator("#dead-message")).to_contain_text(f"Requeued job {job_id[:8]}")
    expect(row).to_have_count(0)
    assert platform.wait(job_id)["state"] == "succeeded"
    expect(page.locator("#stat-dead")).to_have_text(str(dead_before - 1))


def _crop_has_detail(shot: Image.Image, box: dict) -> bool:
    crop = shot.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]), int(box["y"] + box["height"])))
    return len(crop.getcolors(maxcolors=1_000_000) or []) > 2  # text drawn, not an empty area


def test_screenshot_shows_queues_jobs_and_states_and_the_layout_fits_a_phone(
        page: Page, site: Site, tmp_path: Path):
    # Tenant carol gets a job in each state the page shows: dead, succeeded, queued, cancelled.
    platform, tenant = site.platform, "carol"
    site.use_llm_worker("failing")
    assert platform.wait(platform.submit_llm(SHORT, tenant).json()["id"], tenant=tenant)["state"] == "dead"
    site.use_llm_worker("working")
    for _ in range(2):
        job_id = platform.submit_llm(SHORT, tenant).json()["id"]
        assert platform.wait(job_id, tenant=tenant)["state"] == "succeeded"
    site.use_llm_worker("none")  # from now on, jobs wait in the queues
    queued = [platform.submit_llm({**SHORT, "priority": p}, tenant).json()["id"] for p in ("high", "normal", "normal")]
    httpx.delete(f"{platform.gateway.url}/v1/jobs/{queued[-1]}", headers=platform.headers(tenant), timeout=10)

    ocr_worker = site.factory.start_worker("ocr", site.env)  # live, with no OCR work: the LLM work waits
    try:
        shoot_and_check(page, site, tenant, tmp_path)
    finally:
        ocr_worker.stop()


def shoot_and_check(page: Page, site: Site, tenant: str, tmp_path: Path) -> None:
    platform = site.platform
    sign_in(page, platform, tenant)
    expect(page.locator("#fleet-summary")).to_contain_text("ocr: 1 live", timeout=30_000)
    expect(page.locator("#warnings")).to_contain_text("no live llm worker")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(6)
    expect(page.locator("#dead-table tbody tr")).to_have_count(1)
    waiting = sum(q["depth"] for q in queues(platform)["queues"].values())
    assert waiting >= 2
    expect(page.locator("#stat-waiting")).to_have_text(str(waiting))
    shot_bytes = page.screenshot(full_page=True)
    (tmp_path / "dashboard.png").write_bytes(shot_bytes)
    if target := os.environ.get("OFFLOAD_DASHBOARD_SCREENSHOT"):  # make docs-screenshot: refresh the docs' image
        Path(target).write_bytes(shot_bytes)

    shot = Image.open(io.BytesIO(shot_bytes)).convert("RGB")
    page_size = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert shot.size == tuple(page_size)
    key_elements = {
        "sign-out": page.get_by_role("button", name="Sign out"),
        "queues": page.locator("#queues-table"),
        "replicas": page.locator("#workers-table"),
        "jobs": page.locator("#jobs-table"),
        "dead letters": page.get_by_role("heading", name="Dead letters"),
        "requeue": page.locator("#dead-table").get_by_role("button", name="Requeue", exact=False),
        "throughput": page.locator("figure.throughput[data-job-type='llm']"),
        "workers": page.get_by_role("heading", name="Workers", exact=True),
        "warning": page.locator("#warnings"),
        "input": page.locator("#jobs-table td.input").first,
        "succeeded badge": page.locator("#jobs-table .badge.state-succeeded").first,
        "queued badge": page.locator("#jobs-table .badge.state-queued").first,
    }
    for name, locator in key_elements.items():
        box = locator.bounding_box()
        assert box and box["x"] >= 0 and box["y"] >= 0, name
        assert box["x"] + box["width"] <= shot.width and box["y"] + box["height"] <= shot.height, name
        assert _crop_has_detail(shot, box), f"{name} is blank in the screenshot"
    badge = key_elements["succeeded badge"].bounding_box()
    colours = shot.crop((int(badge["x"]), int(badge["y"]), int(badge["x"] + badge["width"]),
                         int(badge["y"] + badge["height"]))).getcolors(maxcolors=1_000_000)
    assert max(colours)[1] == (0x1E, 0x7B, 0x34), "the succeeded badge is not drawn in its colour"

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator("#queues-table tbody tr")).to_have_count(len(ALL_QUEUES))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing pushes the page sideways
    # The replicas column fits the phone's width without scrolling its table sideways (the
    # warning at the top may push it below the fold).
    replicas = page.get_by_role("columnheader", name="Replicas wanted").bounding_box()
    assert replicas and replicas["x"] >= 0 and replicas["x"] + replicas["width"] <= 390


# -- what an operator runs on -------------------------------------------------------------------


def test_workers_panel_lists_the_live_worker_and_the_page_warns_when_work_waits_without_one(page: Page, site: Site):
    site.use_llm_worker("working")
    platform = site.platform
    pid = platform.workers["llm"].proc.pid
    sign_in(page, platform, "ops")
    row = page.locator(f"#fleet-table tr[data-worker-id^='llm-{pid}@']")
    expect(row).to_have_attribute("data-state", "live", timeout=30_000)
    expect(row.locator(".badge")).to_have_text("live")
    expect(page.locator("#fleet-summary")).to_contain_text("llm: 1 live")
    expect(page.locator("#warnings")).to_be_hidden()

    site.use_llm_worker("none")  # a clean stop: the worker leaves the registry
    expect(row).to_have_count(0, timeout=30_000)
    platform.submit_llm(SHORT, "ops")
    warning = page.locator("#warnings p[data-job-type='llm']")
    expect(warning).to_contain_text("no live llm worker", timeout=30_000)
    llm = page.locator("#workers-table tbody tr", has=page.get_by_role("rowheader", name="llm", exact=True))
    expect(llm.locator("td.live")).to_have_text("0")


def test_throughput_chart_counts_finished_and_failed_jobs_per_type(page: Page, site: Site):
    platform = site.platform
    site.use_llm_worker("failing")
    assert platform.wait(platform.submit_llm(SHORT, "ops").json()["id"], tenant="ops")["state"] == "dead"
    site.use_llm_worker("working")
    assert platform.wait(platform.submit_llm(SHORT, "ops").json()["id"], tenant="ops")["state"] == "succeeded"
    sign_in(page, platform, "ops")
    api = httpx.get(f"{platform.status.url}/v1/throughput", headers=platform.headers("ops"), timeout=10).json()
    llm = api["totals"]["llm"]
    assert llm["succeeded"] >= 1 and llm["dead"] >= 1
    figure = page.locator("figure.throughput[data-job-type='llm']")
    finished = llm["succeeded"] + llm["failed"] + llm["dead"] + llm["cancelled"]
    expect(figure.locator(".summary")).to_contain_text(f"llm: {finished} finished, {llm['failed'] + llm['dead']} failed or dead")
    expect(figure.locator("svg rect.ok").first).to_be_visible()
    expect(figure.locator("svg rect.bad").first).to_be_visible()
    expect(page.locator("figure.throughput")).to_have_count(len(JobType))  # one per job type


def test_each_job_shows_its_input_and_run_time_and_can_be_found_by_id(page: Page, site: Site):
    site.use_llm_worker("working")
    platform = site.platform
    done = platform.submit_llm(LONG | {"max_tokens": 8}, "bob").json()["id"]
    assert platform.wait(done, tenant="bob")["state"] == "succeeded"
    document = png_document()
    ocr = platform.submit_ocr(document.data, "invoice.png", tenant="bob").json()["id"]  # no OCR worker: it waits
    later = platform.submit_llm({**SHORT, "delay_seconds": 600}, "bob").json()["id"]
    sign_in(page, platform, "bob")

    llm_row = page.locator(f"#jobs-table tr[data-job-id='{done}']")
    expect(llm_row.locator("td.input")).to_have_text(
        "“Write a long story about a lighthouse keeper.” · smollm2-135m-instruct")
    expect(llm_row.locator("td.runtime")).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    ocr_row = page.locator(f"#jobs-table tr[data-job-id='{ocr}']")
    kib = f"{len(document.data) / 1024:.1f} KiB"
    expect(ocr_row.locator("td.input")).to_have_text(f"invoice.png · 1 page · {kib} · eng")
    expect(ocr_row.locator("td.runtime")).to_have_text("–")
    expect(page.locator(f"#jobs-table tr[data-job-id='{later}'] .badge")).to_have_text("scheduled")

    page.get_by_label("Job id").fill(done[:8])  # the short id the list shows
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#job-id")).to_have_text(done)
    expect(page.locator("#job-fields")).to_contain_text("“Write a long story about a lighthouse keeper.”")
    expect(page.locator("#job-runtime")).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    page.get_by_role("link", name="← Overview").click()
    page.get_by_label("Job id").fill(ocr.upper())  # a full id, in any case
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#job-id")).to_have_text(ocr)
    page.get_by_role("link", name="← Overview").click()
    page.get_by_label("Job id").fill("00000000-0000-4000-8000-000000000000")
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#search-message")).to_have_text("No job 00000000-0000-4000-8000-000000000000 for your key.")

    page.get_by_label("Type", exact=True).select_option("probe")
    expect(page.locator("#jobs-empty")).to_be_visible()  # bob has no probe jobs


def test_requeue_is_offered_only_where_a_rerun_can_change_the_end(page: Page, site: Site):
    site.use_llm_worker("working")  # it runs probe jobs too
    platform = site.platform
    permanent = platform.submit_probe({"fail": "permanent"}).json()["id"]
    exhausted = platform.submit_probe({"fail": "retryable"}).json()["id"]
    assert platform.wait(permanent, tenant="ops")["state"] == "failed"
    assert platform.wait(exhausted, tenant="ops", timeout=120)["state"] == "dead"
    sign_in(page, platform, "ops", f"/#/jobs/{permanent}")
    expect(page.locator("#job-error")).to_contain_text("not retryable")
    expect(page.locator("#job-state")).to_have_text("failed")
    expect(page.get_by_role("button", name="Requeue")).to_be_hidden()
    page.goto(platform.status.url + f"/#/jobs/{exhausted}")
    expect(page.locator("#job-state")).to_have_text("dead")
    expect(page.get_by_role("button", name="Requeue")).to_be_visible()


def test_admin_requeues_and_purges_dead_letters_in_bulk_after_confirming(page: Page, site: Site):
    platform = site.platform
    site.use_llm_worker("failing")
    ids = [platform.submit_llm(SHORT, "bob").json()["id"] for _ in range(3)]
    for job_id in ids:
        assert platform.wait(job_id, tenant="bob")["state"] == "dead"
    site.use_llm_worker("none")  # requeued jobs wait in the queue

    sign_in(page, platform, "bob")  # a tenant's key: no bulk work
    expect(page.locator(f"#dead-table tr[data-job-id='{ids[0]}']")).to_be_visible()
    expect(page.locator("#dead-bulk")).to_be_hidden()
    expect(page.locator(f"#dead-table tr[data-job-id='{ids[0]}'] input[type=checkbox]")).to_be_hidden()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, platform, "ops")
    for job_id in ids[:2]:
        page.get_by_label(f"Select job {job_id}").check()
    expect(page.locator("#dead-selected-count")).to_have_text("2 selected")
    page.get_by_role("button", name="Requeue selected").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Requeue 2 dead jobs?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert platform.job(ids[0], "bob")["state"] == "dead"  # nothing happened

    page.get_by_role("button", name="Requeue selected").click()
    dialog.get_by_role("button", name="Requeue").click()
    expect(page.locator("#dead-message")).to_contain_text("Requeued 2 dead jobs")
    assert [platform.job(i, "bob")["state"] for i in ids[:2]] == ["queued", "queued"]
    expect(page.locator(f"#dead-table tr[data-job-id='{ids[0]}']")).to_have_count(0)

    page.get_by_label(f"Select job {ids[2]}").check()
    page.get_by_role("button", name="Purge selected").click()
    expect(dialog).to_contain_text("This cannot be undone")
    dialog.get_by_role("button", name="Purge").click()
    expect(page.locator("#dead-message")).to_contain_text("Purged 1 dead job")
    gone = httpx.get(f"{platform.status.url}/v1/jobs/{ids[2]}", headers=platform.headers("bob"), timeout=10)
    assert gone.status_code == 404


def test_ocr_text_shows_where_each_page_begins(page: Page, site: Site):
    platform = site.platform
    worker = site.factory.start_worker("ocr", site.env)
    try:
        document = pdf_document(pages=2)
        job_id = platform.submit_ocr(document.data, "two-pages.pdf", tenant="bob").json()["id"]
        assert platform.wait(job_id, tenant="bob", timeout=180)["state"] == "succeeded"
    finally:
        worker.stop()
    sign_in(page, platform, "bob", f"/#/jobs/{job_id}")
    pages = page.locator("#job-result-pages section.ocr-page")
    expect(pages).to_have_count(2)
    expect(pages.nth(0).get_by_role("heading")).to_contain_text("Page 1 of 2")
    expect(pages.nth(1).get_by_role("heading")).to_contain_text("Page 2 of 2")
    for n, section in enumerate((pages.nth(0), pages.nth(1))):
        expect(section.locator("pre")).to_contain_text(document.texts[n].split()[0])
    expect(page.locator("#job-result")).to_be_hidden()
