"""Prometheus exposition shared by every process (the worker port and the APIs' /metrics).

In a prefork worker (multiprocess mode, see `multiprocess_metrics`) the page is the sum over
all of its processes; elsewhere it is this process's default registry.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from offload_core.observability import multiprocess as multiprocess_metrics


def render_latest() -> tuple[str, bytes]:
    if multiprocess_metrics.enabled():
        return CONTENT_TYPE_LATEST, generate_latest(multiprocess_metrics.scrape_registry())
    return CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
