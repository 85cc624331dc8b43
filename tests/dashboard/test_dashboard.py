"""The dashboard, driven in headless Chromium against the real platform: sign in, queues, the
live job page, dead-letter requeue, a phone-width layout, and the screenshot for the docs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import TRACE_TEMPLATE, Site
from tests.support.browser import sign_in

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
    expect(page.locator("#queues-table tbody tr")).to_have_count(9)  # three priorities of ocr, llm and probe
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

    sign_in(page, platform, tenant)
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
    expect(page.locator("#queues-table tbody tr")).to_have_count(9)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing pushes the page sideways
    replicas = page.get_by_role("columnheader", name="Replicas wanted")
    expect(replicas).to_be_in_viewport()
