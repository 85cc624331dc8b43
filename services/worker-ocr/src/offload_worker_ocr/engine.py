"""Tesseract through tesserocr, kept loaded for the life of the worker process.

Loading a language model takes about a second; recognising an A4 page a fraction of that on a
quiet core. So the engine keeps a few `PyTessBaseAPI` instances loaded, one per language
combination, most recently used kept (a small LRU). Each is lent to one job at a time, so a
threads pool cannot run two pages through the same instance.

The tessdata directory is always passed explicitly: without it tesserocr's language lookup
walks the current directory (TOOLING.md saw it spin for minutes).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import closing
from pathlib import Path
from typing import Any

import tesserocr
from opentelemetry import trace
from PIL import Image

from offload_core.documents.formats import DocumentRejected, inspect, iter_pages
from offload_core.documents.languages import parse_languages
from offload_core.errors import PermanentJobError
from offload_core.settings import Settings
from offload_core.worker.handler import JobContext

# Page segmentation mode 3 (automatic layout analysis). Measured on tests/support pages
# (A4, 300 dpi, character error rate against the drawn text):
#   clean and mildly scanned single-column pages: 0 errors with 3, 4 and 6 alike;
#   a two-column page: 3 -> 0.0 %, 4 and 6 -> 72 % (they read across both columns, line by line);
#   a harsh scan (1.5 degrees skew, heavy speckle, blur): 3 -> 10.6 %, 6 -> 19.3 %, 4 -> 47.8 %.
# TOOLING.md saw 4 and 6 keep line order where 3 scrambled it on some noisy scans; on ours
# 3 did at least as well everywhere, and it is the only one that reads columns correctly.
PAGE_SEGMENTATION = tesserocr.PSM.AUTO

# Resolutions outside this range in an image's metadata are junk (0, 1, 72 from a screenshot
# tool...); Tesseract then estimates the resolution from the text itself.
_PLAUSIBLE_DPI = range(100, 1201)

tracer = trace.get_tracer("offload.worker.ocr")


def installed_languages(settings: Settings) -> list[str]:
    """Recognition languages installed in the tessdata directory (osd is not one)."""
    return sorted(p.stem for p in Path(settings.ocr_tessdata).glob("*.traineddata") if p.stem != "osd")


class OcrEngine:
    """Runs OCR jobs: `run(ctx)` is the worker-ocr job handler's body."""

    def __init__(self, settings: Settings, *, max_loaded: int = 3) -> None:
        self.settings = settings
        self.tessdata = Path(settings.ocr_tessdata)
        self.max_loaded = max_loaded
        self._idle: OrderedDict[str, list[tesserocr.PyTessBaseAPI]] = OrderedDict()  # least recent first
        self._lock = threading.Lock()
        if not self.available_languages():
            raise FileNotFoundError(
                f"no Tesseract language data (*.traineddata) in {self.tessdata}; set OFFLOAD_OCR_TESSDATA"
            )

    # ------------------------------------------------------------------ languages

    def available_languages(self) -> list[str]:
        """Recognition languages installed in the tessdata directory (osd is not one)."""
        return installed_languages(self.settings)

    def validate_languages(self, text: str | None) -> str:
        """`text` ("eng", "eng+deu") checked and normalised; `PermanentJobError` saying what is wrong.

        Empty means the configured default. Duplicates are dropped; the first language stays
        first (Tesseract treats it as the main one).
        """
        try:
            languages = parse_languages(text, self.settings.ocr_default_languages)
        except ValueError as exc:
            raise PermanentJobError(str(exc), error_type="InvalidLanguages") from None
        codes = list(dict.fromkeys(languages.split("+")))
        installed = self.available_languages()
        missing = [code for code in codes if code not in installed]
        if missing:
            raise PermanentJobError(
                f"no language data installed for {', '.join(missing)}; installed: {', '.join(installed)}",
                error_type="InvalidLanguages",
            )
        return "+".join(codes)

    # ------------------------------------------------------------------ the job

    def run(self, ctx: JobContext) -> dict[str, Any]:
        """OCR every page of `ctx.payload`, reporting progress after each one.

        Raises `DocumentRejected` for a file that cannot be read (at any page), a
        `PermanentJobError` for unusable languages, and lets `JobCancelled` from
        `ctx.progress` through: a cancelled job stops before its next page.
        """
        languages = self.validate_languages(ctx.params.get("languages"))
        s = self.settings
        limits = {"dpi": s.ocr_dpi, "max_pages": s.ocr_max_pages, "max_pixels": s.ocr_max_pixels}
        info = inspect(ctx.payload, **limits)
        ctx.checkpoint()
        started = time.perf_counter()
        pages: list[dict[str, Any]] = []
        api = self._checkout(languages)
        healthy = True
        try:
            with closing(iter_pages(ctx.payload, **limits)) as images:
                for number, image in enumerate(images, start=1):
                    # One span per page: sizes and confidence only, never the text.
                    attributes = {"ocr.page": number, "ocr.pages": info.pages, "ocr.languages": languages,
                                  "ocr.width": image.width, "ocr.height": image.height}
                    with tracer.start_as_current_span("ocr.page", attributes=attributes) as span:
                        try:
                            text, confidence = _recognise(api, image)
                        except RuntimeError as exc:
                            healthy = False  # do not lend this instance again
                            raise DocumentRejected(
                                f"page {number} could not be read by the OCR engine ({exc}); export or scan it again"
                            ) from None
                        span.set_attribute("ocr.confidence", confidence)
                    pages.append({"page": number, "text": text, "confidence": confidence,
                                  "width": image.width, "height": image.height})
                    ctx.progress(number, info.pages, f"page {number}/{info.pages}")
        finally:
            self._checkin(languages, api, healthy)
        return {
            "pages": pages,
            "page_count": len(pages),
            "languages": languages,
            "kind": info.kind.value,
            "text": "\f".join(p["text"] for p in pages),
            "seconds": round(time.perf_counter() - started, 3),
        }

    # ------------------------------------------------------------------ loaded models

    def _checkout(self, languages: str) -> tesserocr.PyTessBaseAPI:
        with self._lock:
            idle = self._idle.get(languages)
            if idle:
                api = idle.pop()
                if not idle:
                    del self._idle[languages]
                return api
        try:
            return tesserocr.PyTessBaseAPI(path=str(self.tessdata), lang=languages, psm=PAGE_SEGMENTATION)
        except RuntimeError as exc:
            # The files are there (validate_languages checked), so they are unreadable.
            raise PermanentJobError(
                f"the OCR engine could not load the language data for {languages} ({exc})",
                error_type="InvalidLanguages",
            ) from None

    def _checkin(self, languages: str, api: tesserocr.PyTessBaseAPI, healthy: bool) -> None:
        if not healthy:
            api.End()
            return
        api.Clear()  # drop the last page's image and results, keep the model
        evicted: list[tesserocr.PyTessBaseAPI] = []
        with self._lock:
            self._idle.setdefault(languages, []).append(api)
            self._idle.move_to_end(languages)
            while sum(len(apis) for apis in self._idle.values()) > self.max_loaded:
                oldest_languages, oldest = next(iter(self._idle.items()))
                evicted.append(oldest.pop(0))
                if not oldest:
                    del self._idle[oldest_languages]
        for old in evicted:
            old.End()

    def loaded_languages(self) -> list[str]:
        """Language combinations with a model loaded and idle, least recently used first."""
        with self._lock:
            return list(self._idle)

    def close(self) -> None:
        with self._lock:
            apis = [api for idle in self._idle.values() for api in idle]
            self._idle.clear()
        for api in apis:
            api.End()


def _recognise(api: tesserocr.PyTessBaseAPI, image: Image.Image) -> tuple[str, float]:
    """The page's text and its mean word confidence (0-100; 0 for a page without words)."""
    api.SetImage(image)
    dpi = image.info.get("dpi")
    if dpi and round(dpi[0]) in _PLAUSIBLE_DPI:
        api.SetSourceResolution(round(dpi[0]))
    text = api.GetUTF8Text()
    confidences = api.AllWordConfidences()
    confidence = round(sum(confidences) / len(confidences), 2) if confidences else 0.0
    return text.strip(), confidence
