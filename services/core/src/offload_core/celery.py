"""The Celery app for Celery's own tools, pointed at the platform's Redis (OFFLOAD_REDIS_URL):

    celery -A offload_core inspect ping | active | stats | active_queues
    celery -A offload_core events
    celery -A offload_core flower

(`-A offload_core` finds this module; `-A offload_core.celery:app` names it.) It is made on
first use, not at import, and it has no queue of its own: workers start with
`offload-worker-ocr` / `offload-worker-llm`, never from this app. docs/operations.md says what
each tool shows.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    from offload_core.queue.celery_app import make_control_app
    from offload_core.settings import Settings

    app = make_control_app(Settings())
    globals()["app"] = app
    return app
