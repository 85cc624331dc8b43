"""OCR jobs through the whole platform: gateway -> Redis -> worker-ocr -> status."""

from __future__ import annotations

import pytest

from tests.support import documents as docs


def test_png_and_scanned_pdf_are_read_back_with_low_character_error_rate(platform):
    png = docs.png_document()
    pdf = docs.pdf_document(pages=3, scanned=True)
    r_png = platform.submit_ocr(png.data, "page.png", content_type="image/png")
    r_pdf = platform.submit_ocr(pdf.data, "scan.pdf", content_type="application/pdf",
                                fields={"priority": "high", "languages": "eng"})
    assert r_png.status_code == 202, r_png.text
    assert r_pdf.status_code == 202, r_pdf.text
    assert r_pdf.headers["location"].endswith(f"/v1/jobs/{r_pdf.json()['id']}")

    for response, doc in ((r_png, png), (r_pdf, pdf)):
        job = platform.wait(response.json()["id"], timeout=180)
        assert job["state"] == "succeeded", job
        result = platform.result(job["id"])
        assert result["page_count"] == len(doc.texts)
        for page, expected in zip(result["pages"], doc.texts):
            assert docs.cer(expected, page["text"]) < 0.02, page["text"][:200]
            assert 0 < page["confidence"] <= 100


def test_progress_is_reported_after_every_page(platform):
    pdf = docs.pdf_document(pages=3)
    job_id = platform.submit_ocr(pdf.data, "three.pdf").json()["id"]
    events = platform.events(job_id)
    progress = [data for _, kind, data in events if kind == "progress"]
    assert [(p["current"], p["total"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]
    states = [data["state"] for _, kind, data in events if kind == "state"]
    assert states == ["queued", "running", "succeeded"]


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (docs.corrupt_pdf, 422, "pdf"),
        (docs.truncated_pdf, 422, "pdf"),
        (docs.encrypted_pdf, 422, "encrypted"),
        (docs.bomb_png, 422, "pixels"),
        (lambda: b"", 422, "empty"),
        (lambda: b"just some text, not a document", 415, "png"),
    ],
    ids=["corrupt-pdf", "truncated-pdf", "encrypted-pdf", "bomb-png", "empty", "text-as-png"],
)
def test_hostile_uploads_get_a_clear_problem_and_nothing_is_queued(platform, make, status, words):
    r = platform.submit_ocr(make(), "evil.png", content_type="image/png")
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"].lower()


def test_oversized_upload_is_refused_with_413(platform):
    limit = 25 * 1024 * 1024  # the default OFFLOAD_OCR_MAX_UPLOAD_BYTES
    r = platform.submit_ocr(b"%PDF-1.7\n" + b"0" * (limit + 1), "big.pdf")
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")
    assert str(limit) in r.json()["detail"]


def test_worker_still_serves_the_next_job_after_a_document_that_fails_in_the_worker(platform):
    # Damaged pixels behind a sound PNG frame: accepted at submit, failed by the worker, for good.
    bad = platform.submit_ocr(docs.damaged_pixels_png(), "x.png").json()["id"]
    good = platform.submit_ocr(docs.png_document().data, "ok.png").json()["id"]
    failed = platform.wait(bad)
    assert failed["state"] == "failed"
    assert failed["error"]["retryable"] is False
    assert "cannot be decoded" in failed["error"]["message"]
    assert failed["attempts"] == 1
    assert platform.wait(good)["state"] == "succeeded"
