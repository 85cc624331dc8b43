"""The one Celery app factory. Every delivery guarantee Offload promises is set here.

- acks late + reject on worker lost: a message is acknowledged only after its job reached an
  outcome, so a killed job process's job is delivered again (a whole worker lost is the lease
  reaper's to recover: maintenance/leases.py);
- prefetch 1: a worker holds no message it is not running (priority stays strict);
- visibility timeout above every hard time limit: kombu hands an unacknowledged message out
  again only when its worker is surely gone (the last line of defence: the lease reaper
  recovers a lost worker's job within a minute, and drops that message);
- strict queue order (`queue_order_strategy="priority"`, kombu >= 5.7): high before normal
  before low;
- JSON only; results are not stored by Celery (the job store keeps them);
- the Redis transport of `offload_core.queue.broker`: a worker whose ack failed during a Redis
  outage goes back to consuming once Redis returns, instead of idling forever, and the message
  of a job whose process was killed goes back to the head of its queue.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from offload_core.queue.broker import TRANSPORT
from offload_core.queue.routing import consumed_by, queue_name
from offload_core.settings import Settings
from offload_core.types import JobType, Priority


def make_celery(settings: Settings, job_type: JobType, *, main: str | None = None) -> Celery:
    """A Celery app for the workers of `job_type`, consuming its three queues in priority order."""
    app = Celery(main or f"offload-worker-{job_type.value}", broker=settings.redis_url, set_as_current=True)
    vt = settings.visibility_timeout_seconds
    soft, hard = settings.time_limits(job_type)
    app.conf.update(
        broker_transport=TRANSPORT,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=soft,
        task_time_limit=hard,
        # Queues in consumption order; the exchange is the queue's own direct exchange.
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in consumed_by(job_type)],
        task_default_queue=queue_name(job_type, Priority.NORMAL),
        broker_transport_options={
            "queue_order_strategy": "priority",
            "visibility_timeout": vt,
            # Look for abandoned messages often enough that recovery takes about the
            # visibility timeout, not ten times it (kombu's default throttle).
            "unacked_restore_interval": max(1, min(10, vt // 10)),
            "unacked_restore_throttle": 1,
            # The lock one worker holds while it restores abandoned messages outlives a worker
            # killed while holding it; kombu's 300 s would delay every recovery by five minutes.
            "unacked_mutex_expire": max(5, min(60, vt // 10)),
            "socket_timeout": 15,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker never gives up on Redis; it waits
        broker_heartbeat=0,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Celery's own tools (docs/operations.md): remote control answers `celery inspect` and
        # Flower's worker pages (a pub/sub channel per worker, nothing per job); task events
        # feed `celery events` and Flower's task pages (three PUBLISHes per job), off by default.
        worker_send_task_events=settings.celery_events,
        task_send_sent_event=False,  # the gateway queues jobs without Celery: nothing would send it
        worker_enable_remote_control=settings.celery_remote_control,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child or None,
        worker_soft_shutdown_timeout=settings.worker_shutdown_timeout_seconds,
        worker_enable_soft_shutdown_on_idle=True,
    )
    if tls := settings.redis_tls_options():
        # kombu turns on TLS from the URL scheme only for its own transport name; with ours it
        # must be said. Certificates are verified (against a private CA when one is given), as
        # the APIs' Redis client (redis-py) does.
        app.conf.broker_use_ssl = tls
    return app


def make_control_app(settings: Settings) -> Celery:
    """The app Celery's own tools load (`celery -A offload_core inspect ...`, `celery -A
    offload_core events`, Flower; offload_core/celery.py): the broker and transport the workers
    use, and no queue of its own, so a `celery worker` started from it by mistake takes no job."""
    app = Celery("offload", broker=settings.redis_url, set_as_current=False)
    app.conf.update(broker_transport=TRANSPORT, task_serializer="json", accept_content=["json"],
                    task_ignore_result=True, result_backend=None, broker_connection_retry_on_startup=True,
                    task_queues=[], task_default_queue="offload-control-only")
    if tls := settings.redis_tls_options():
        app.conf.broker_use_ssl = tls  # as the workers' (make_celery): verified, a private CA if given
    return app
