"""Start a worker: the Celery app for one job type, the shared runner, the health/metrics port.

`offload-worker-ocr` and `offload-worker-llm` call `run_worker` with their handler; the
container, `make run` and the tests all start workers through these same commands.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from celery import Celery
from celery.signals import worker_process_init

from .celery_app import make_celery
from .handler import JobHandler
from .logs import configure_logging
from .routing import queues_for
from .runner import JobRunner
from .settings import Settings
from .types import JobType
from .worker_http import start_health_server
from .worker_store import connect_sync

log = logging.getLogger("offload.worker")


def build_worker(job_type: JobType, handler: JobHandler, settings: Settings) -> Celery:
    app = make_celery(settings, job_type)
    JobRunner(app, job_type, handler, settings).register()
    from .webhooks import register_webhook_task  # the webhook task runs on the same workers

    register_webhook_task(app, settings)
    return app


def run_worker(job_type: JobType, make_handler: Callable[[Settings], JobHandler],
               on_process_start: Callable[[Settings], None] | None = None) -> None:
    configure_logging()
    settings = Settings()
    app = build_worker(job_type, make_handler(settings), settings)
    server = start_health_server(settings, connect_sync(settings))

    @worker_process_init.connect(weak=False)
    def _child_started(**_: object) -> None:
        configure_logging()
        if server is not None:
            server.socket.close()  # the port belongs to the parent; children only run jobs
        if on_process_start is not None:
            on_process_start(settings)

    argv = [
        "worker",
        "--loglevel=INFO",
        f"--concurrency={settings.worker_concurrency}",
        f"--pool={settings.worker_pool}",
        f"--queues={','.join(queues_for(job_type))}",
        f"--hostname={job_type.value}@{socket.gethostname()}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    log.info("starting %s worker on %s", job_type.value, ", ".join(queues_for(job_type)))
    app.worker_main(argv)
