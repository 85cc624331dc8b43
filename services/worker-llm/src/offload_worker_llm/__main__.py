"""`offload-worker-llm`: a Celery worker consuming, at each priority from high to low, the LLM
queue, then the embed queue, then the probe queue (SERVED_BY).

With the `openai` backend one process keeps OFFLOAD_LLM_MAX_IN_FLIGHT streams going, a thread
each (each its own worker identity; docs/architecture.md, "Many streams per process"): an HTTP
stream waits on the network, not the CPU. The in-process `llamacpp` backend keeps one job per
process (OFFLOAD_WORKER_POOL, OFFLOAD_WORKER_CONCURRENCY): a generation uses the CPU it has.
"""

import logging

from offload_core.settings import Settings
from offload_core.types import JobType
from offload_core.worker.main import configured_pool, run_worker

from .embed_handler import make_embed_handler
from .handler import make_handler

log = logging.getLogger("offload.worker.llm")


def llm_pool(settings: Settings) -> tuple[str, int]:
    if settings.llm_backend == "openai":
        if (settings.worker_pool, settings.worker_concurrency) != ("prefork", 1):
            log.info("the openai backend runs OFFLOAD_LLM_MAX_IN_FLIGHT (%d) streams on threads; "
                     "OFFLOAD_WORKER_POOL and OFFLOAD_WORKER_CONCURRENCY apply to the llamacpp backend",
                     settings.llm_max_in_flight)
        return "threads", settings.llm_max_in_flight
    return configured_pool(settings)


def main() -> None:
    run_worker(JobType.LLM, lambda settings: {JobType.LLM: make_handler(settings),
                                              JobType.EMBED: make_embed_handler(settings)}, pool_of=llm_pool)


if __name__ == "__main__":
    main()
