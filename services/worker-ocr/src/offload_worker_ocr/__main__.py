"""`offload-worker-ocr`: a Celery worker consuming ocr.high, ocr.normal, ocr.low in that order."""

from offload_core.types import JobType
from offload_core.worker.main import run_worker

from .handler import make_handler


def main() -> None:
    run_worker(JobType.OCR, make_handler)


if __name__ == "__main__":
    main()
