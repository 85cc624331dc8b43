"""The OCR engine on real Tesseract: text recovered, progress after each page, cancel between
pages, languages checked, hostile files refused without harming the engine."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from offload_core.documents.formats import DocumentRejected
from offload_core.errors import JobCancelled, PermanentJobError
from offload_core.settings import Settings
from offload_worker_ocr.engine import OcrEngine
from tests.support import documents as docs


class FakeContext:
    """Our own JobContext interface, recording what the engine reports.

    `cancel_at_progress=n`: the job is cancelled while page n is read, so the check made by
    the n-th `progress` call raises, as the real runner's does.
    """

    def __init__(self, payload: bytes, params: dict[str, Any] | None = None, *,
                 cancel_at_progress: int | None = None) -> None:
        self.job_id, self.tenant, self.attempt = "job-1", "tenant-a", 1
        self.payload, self.params = payload, params or {}
        self.settings = Settings(env="dev")
        self.progress_seen: list[tuple[int, int, str]] = []
        self.cancel_at_progress = cancel_at_progress

    def checkpoint(self) -> None:
        if self.cancel_at_progress is not None and len(self.progress_seen) >= self.cancel_at_progress:
            raise JobCancelled()

    def progress(self, current: int, total: int, message: str = "") -> None:
        self.progress_seen.append((current, total, message))
        self.checkpoint()

    def tokens(self, text: str) -> None:
        raise AssertionError("OCR streams no tokens")


@pytest.fixture(scope="module")
def engine():
    e = OcrEngine(Settings(env="dev"))
    yield e
    e.close()


FORMATS = {
    "png": lambda: docs.png_document(),
    "jpeg-scanned": lambda: docs.jpeg_document(scanned=True),
    "tiff-3-pages": lambda: docs.tiff_document(3),
    "pdf-3-pages-scanned": lambda: docs.pdf_document(3, scanned=True),
}


@pytest.mark.parametrize("make", FORMATS.values(), ids=FORMATS.keys())
def test_text_is_recovered_with_under_two_percent_character_errors(engine, make):
    doc = make()
    ctx = FakeContext(doc.data)
    result = engine.run(ctx)
    pages = len(doc.texts)
    assert result["page_count"] == pages and result["languages"] == "eng"
    for number, (expected, page) in enumerate(zip(doc.texts, result["pages"], strict=True), start=1):
        assert docs.cer(expected, page["text"]) < 0.02, page["text"][:300]
        assert page["page"] == number
        assert (page["width"], page["height"]) in {(2480, 3508), (2481, 3508)}
        assert 80 < page["confidence"] <= 100
    assert result["text"].split("\f") == [p["text"] for p in result["pages"]]
    assert ctx.progress_seen == [(n, pages, f"page {n}/{pages}") for n in range(1, pages + 1)]


def test_a_job_cancelled_during_a_page_stops_before_the_next(engine):
    ctx = FakeContext(docs.tiff_document(3).data, cancel_at_progress=1)
    with pytest.raises(JobCancelled):
        engine.run(ctx)
    assert ctx.progress_seen == [(1, 3, "page 1/3")]
    assert engine.loaded_languages() == ["eng"]  # the model went back for the next job


@pytest.mark.parametrize(("languages", "words"), [
    ("klingon", "no language data installed for klingon; installed: eng"),
    ("eng+deu+fra", "no language data installed for deu, fra; installed: eng"),
    ("osd", "no language data installed for osd"),
    ("eng; rm -rf /", "Tesseract language codes joined by '+'"),
    ("../../etc/passwd", "Tesseract language codes joined by '+'"),
    ("+".join(["eng"] * 9), "at most 8"),
])
def test_unknown_or_malformed_languages_fail_permanently_saying_what_is_installed(engine, languages, words):
    ctx = FakeContext(docs.png_document().data, {"languages": languages})
    with pytest.raises(PermanentJobError) as refused:
        engine.run(ctx)
    assert words in refused.value.message
    assert refused.value.retryable is False
    assert ctx.progress_seen == []


def test_languages_are_normalised_and_the_default_applies(engine):
    assert engine.validate_languages(None) == "eng"
    assert engine.validate_languages("") == "eng"
    assert engine.validate_languages("eng+eng") == "eng"
    assert engine.available_languages() == ["eng"]  # osd is installed too, but reads no text


def test_engine_refuses_hostile_documents_and_still_reads_a_good_page_afterwards(engine):
    for make in (docs.bomb_png, docs.encrypted_pdf, docs.truncated_jpeg, docs.corrupt_pdf,
                 docs.many_pages_pdf, docs.tiff_with_ifd_loop, docs.png_header_then_pdf, lambda: b""):
        ctx = FakeContext(make())
        with pytest.raises(DocumentRejected):
            engine.run(ctx)
        assert ctx.progress_seen == []
    doc = docs.png_document()
    result = engine.run(FakeContext(doc.data))
    assert docs.cer(doc.texts[0], result["text"]) < 0.02


@pytest.fixture
def two_language_tessdata(tmp_path: Path) -> Path:
    """A tessdata directory with the English model installed twice, under a second name:
    a real second language for the engine's model cache, without downloading one."""
    source = Path(Settings(env="dev").ocr_tessdata) / "eng.traineddata"
    for name in ("eng", "english"):
        os.symlink(source, tmp_path / f"{name}.traineddata")
    return tmp_path


def test_models_stay_loaded_per_language_set_and_the_least_recent_is_dropped(two_language_tessdata):
    settings = Settings(env="dev", ocr_tessdata=str(two_language_tessdata))
    engine = OcrEngine(settings, max_loaded=2)
    try:
        blank = docs.small_png()
        for languages in ("eng", "english", "eng+english", "english"):
            result = engine.run(FakeContext(blank, {"languages": languages}))
            assert result["pages"][0]["text"] == "" and result["pages"][0]["confidence"] == 0.0
        assert engine.loaded_languages() == ["eng+english", "english"]
    finally:
        engine.close()
    assert engine.loaded_languages() == []


def test_an_engine_without_language_data_refuses_to_start(tmp_path):
    with pytest.raises(FileNotFoundError, match="OFFLOAD_OCR_TESSDATA"):
        OcrEngine(Settings(env="dev", ocr_tessdata=str(tmp_path)))


def _textbook_edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def test_the_character_error_rate_used_above_counts_every_edit():
    # The yardstick of the CER assertions: the fast edit distance agrees with the textbook one.
    rng = random.Random(5)
    for _ in range(300):
        a = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 90)))
        b = "".join(rng.choice("abd ") for _ in range(rng.randint(0, 90)))
        assert docs.edit_distance(a, b) == _textbook_edit_distance(a, b)
    assert docs.cer("the  quick\nfox", "the quick fox") == 0.0  # whitespace is normalised
    assert docs.cer("abcdefghij", "abcXefghij") == pytest.approx(0.1)
