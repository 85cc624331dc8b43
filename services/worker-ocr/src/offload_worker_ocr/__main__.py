"""`offload-worker-ocr`: a Celery worker consuming ocr.high, ocr.normal, ocr.low in that order.

Its main process publishes the languages it has installed (offload_core/worker/languages.py), so
the gateway refuses at submit a language no OCR worker has.
"""

from offload_core.jobs.worker_store import connect_sync
from offload_core.settings import Settings
from offload_core.types import JobType
from offload_core.worker.languages import keep_publishing
from offload_core.worker.main import run_worker

from .engine import installed_languages
from .handler import make_handler


def main() -> None:
    settings = Settings()
    keep_publishing(connect_sync(settings), installed_languages(settings), settings)
    run_worker(JobType.OCR, lambda settings: {JobType.OCR: make_handler(settings)})


if __name__ == "__main__":
    main()
