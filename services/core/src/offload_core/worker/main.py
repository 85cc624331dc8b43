"""Start a worker: the Celery app for one job type, the shared runner, the health/metrics port.

`offload-worker-ocr` and `offload-worker-llm` call `run_worker` with their handlers (one per job
type the worker serves besides probes: SERVED_BY); the container, `make run` and the tests all
start workers through these same commands.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown

from offload_core.jobs.worker_store import connect_sync
from offload_core.observability import multiprocess as multiprocess_metrics
from offload_core.observability.logs import configure_logging, redact_settings
from offload_core.observability.telemetry import preload as preload_tracing
from offload_core.observability.telemetry import setup_tracing, shutdown_tracing
from offload_core.observability.tracing import install_job_context
from offload_core.queue.celery_app import make_celery
from offload_core.queue.routing import TASK_NAMES, consumed_by
from offload_core.settings import Settings
from offload_core.types import SERVED_BY, JobType
from offload_core.worker.handler import JobHandler
from offload_core.worker.http import start_health_server
from offload_core.worker.presence import Presence
from offload_core.worker.probe import handle_probe
from offload_core.worker.runner import JobRunner, WorkerResources

log = logging.getLogger("offload.worker")


Handlers = Mapping[JobType, JobHandler]


def build_worker(job_type: JobType, handlers: Handlers, settings: Settings, pool: str = "prefork",
                 presence: Presence | None = None) -> Celery:
    """The Celery app of a `job_type` worker: a task for each job type it serves (SERVED_BY: its
    own, e.g. embeddings on the LLM workers, and the probe jobs every worker runs), sharing one
    store and lease keeper per process. In the threads and solo pools the runner enforces the
    time limits itself (Celery does so only in prefork). With `presence`, the worker registers
    itself and its consumer loop's pulse (worker/presence.py)."""
    handlers = {**handlers, JobType.PROBE: handle_probe}
    if set(handlers) != set(SERVED_BY[job_type]):
        raise ValueError(f"a {job_type} worker serves {sorted(SERVED_BY[job_type])}; handlers were given for "
                         f"{sorted(handlers)}")
    app = make_celery(settings, job_type)
    resources = WorkerResources(settings, presence.counts if presence else None)
    own = pool != "prefork"
    for served in SERVED_BY[job_type]:
        JobRunner(app, served, handlers[served], settings, resources, own_time_limits=own).register()
    if presence is not None:
        app.steps["consumer"].add(presence.consumer_step())
    return app


Pool = Callable[[Settings], tuple[str, int]]


def configured_pool(settings: Settings) -> tuple[str, int]:
    """OFFLOAD_WORKER_POOL with OFFLOAD_WORKER_CONCURRENCY: what every worker uses unless its
    job type knows better (the LLM worker's HTTP backend: a thread per stream)."""
    return settings.worker_pool, settings.worker_concurrency


def celery_flags(settings: Settings) -> list[str]:
    """Gossip and mingle stay off: gossip has every worker follow every other's events (a cost
    that grows with the square of the fleet), mingle syncs revoked task ids at start, which
    Offload does not use (cancel is its own). Celery's worker heartbeat is an event: it comes
    with OFFLOAD_CELERY_EVENTS, for `celery events` and Flower to see workers online."""
    flags = ["--without-gossip", "--without-mingle"]
    if not settings.celery_events:
        flags.append("--without-heartbeat")
    return flags


# Celery's lines for every task: "received" (in the parent, which paces prefetch-1 delivery)
# and "succeeded in". The runner already writes one line per delivery saying what became of
# it, so these only doubled the log and cost about a tenth of a no-op job (BENCHMARKS.md).
# Their warnings and errors still come through; OFFLOAD_LOG_LEVEL=DEBUG brings them all back.
CELERY_PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def quiet_celery_per_task_lines() -> None:
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in CELERY_PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def run_worker(job_type: JobType, make_handlers: Callable[[Settings], Handlers],
               on_process_start: Callable[[Settings], None] | None = None, pool_of: Pool = configured_pool) -> None:
    configure_logging()
    quiet_celery_per_task_lines()
    # Before any job process exists: they inherit the mode and all count into one directory.
    multiprocess_metrics.enable()
    settings = Settings()
    redact_settings(settings)
    pool, concurrency = pool_of(settings)
    client = connect_sync(settings)
    presence = Presence(settings, job_type, client, pool=pool, concurrency=concurrency)
    app = build_worker(job_type, make_handlers(settings), settings, pool, presence)
    server = start_health_server(settings, client, presence)
    main_pid = os.getpid()
    service_name = f"offload-worker-{job_type.value}"
    preload_tracing(celery=True)

    def start_tracing() -> None:
        if setup_tracing(service_name, celery=True) is not None:
            install_job_context([TASK_NAMES[t] for t in SERVED_BY[job_type]])

    @setup_logging.connect(weak=False)
    def _own_logging(**_: object) -> None:
        # Connected, this tells Celery to leave logging alone: otherwise it gives loggers that
        # have no handler yet (billiard's, for one) its own plain-text handler.
        configure_logging()

    @worker_process_init.connect(weak=False)
    def _child_started(**_: object) -> None:
        configure_logging()
        if server is not None and os.getpid() != main_pid:
            server.socket.close()  # the port belongs to the parent; children only run jobs
        start_tracing()  # here, not before the fork (see offload_core.observability.telemetry)
        if on_process_start is not None:
            on_process_start(settings)

    @worker_process_shutdown.connect(weak=False)
    def _child_exiting(**_: object) -> None:
        # A recycled child ends with os._exit: without this its last spans would be lost.
        shutdown_tracing()

    if pool != "prefork":
        start_tracing()  # no job processes and no worker_process_init: jobs run in this one

    argv = [
        "--quiet",  # no banner: stdout carries JSON log lines only
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--queues={','.join(consumed_by(job_type))}",
        f"--hostname={presence.identity.id}",
        *celery_flags(settings),
    ]
    log.info("starting %s worker %s on %s (%s pool, %d at once), remote control %s, task events %s",
             job_type.value, presence.identity.id, ", ".join(consumed_by(job_type)), pool, concurrency,
             "on" if settings.celery_remote_control else "off", "on" if settings.celery_events else "off")
    app.worker_main(argv)
