"""`offload-worker-llm`: a Celery worker consuming llm.high, llm.normal, llm.low in that order."""

from offload_core.types import JobType
from offload_core.worker.main import run_worker

from .handler import make_handler


def main() -> None:
    run_worker(JobType.LLM, make_handler)


if __name__ == "__main__":
    main()
