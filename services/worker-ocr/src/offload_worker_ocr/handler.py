"""The OCR job handler: one Tesseract engine per worker process, kept loaded between jobs."""

from __future__ import annotations

from offload_core.process_local import PerProcess
from offload_core.settings import Settings
from offload_core.worker.handler import JobHandler

from .engine import OcrEngine


def make_handler(settings: Settings) -> JobHandler:
    engine = PerProcess(lambda: OcrEngine(settings))
    return lambda ctx: engine.get().run(ctx)
