"""OCR through the client with a real OCR worker: page progress arrives as events, in order."""

from __future__ import annotations

from offload_client import JobState, OffloadClient, ProgressEvent
from tests.support import documents as docs


def test_ocr_job_reports_progress_after_every_page_and_returns_the_text(client: OffloadClient):
    pdf = docs.pdf_document(pages=3)
    job = client.submit_ocr(pdf.data, filename="minutes.pdf", languages="eng", priority="high")
    assert job.params["filename"] == "minutes.pdf" and job.params["pages"] == 3

    progress: list[ProgressEvent] = []
    done = client.wait(job.id, timeout=180,
                       on_event=lambda e: progress.append(e) if isinstance(e, ProgressEvent) else None)

    assert done.state is JobState.SUCCEEDED and done.progress.current == done.progress.total == 3
    assert [(p.current, p.total, p.message) for p in progress] == [(i, 3, f"page {i}/3") for i in (1, 2, 3)]
    result = client.result(job.id)
    assert result["page_count"] == 3
    for expected, page in zip(pdf.texts, result["pages"], strict=True):
        assert docs.cer(expected, page["text"]) < 0.02
