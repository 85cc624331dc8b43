"""`offload-worker-llm`: a Celery worker consuming, at each priority from high to low, the LLM
queue, then the embed queue, then the probe queue (SERVED_BY).

With the `openai` backend one process keeps OFFLOAD_LLM_MAX_IN_FLIGHT streams going, a thread
each (each its own worker identity; docs/architecture.md, "Many streams per process"): an HTTP
stream waits on the network, not the CPU. (OFFLOAD_WORKER_POOL=prefork, set explicitly, still
gives a process per stream.) The in-process `llamacpp` backend keeps one job per
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
    """openai: threads, OFFLOAD_LLM_MAX_IN_FLIGHT of them, unless OFFLOAD_WORKER_POOL says
    otherwise (prefork then runs OFFLOAD_WORKER_CONCURRENCY processes, a stream each).
    llamacpp: OFFLOAD_WORKER_POOL and OFFLOAD_WORKER_CONCURRENCY as they are."""
    if settings.llm_backend != "openai":
        return configured_pool(settings)
    pool = settings.worker_pool if "worker_pool" in settings.model_fields_set else "threads"
    if pool == "threads":
        return "threads", settings.llm_max_in_flight
    log.info("the openai backend on the %s pool: %d stream(s) per pod", pool, settings.worker_concurrency)
    return configured_pool(settings)


def main() -> None:
    run_worker(JobType.LLM, lambda settings: {JobType.LLM: make_handler(settings),
                                              JobType.EMBED: make_embed_handler(settings)}, pool_of=llm_pool)


if __name__ == "__main__":
    main()
