"""Payload metrics, by store ("redis" when inline in the job record, "s3"):

    offload_payload_bytes_total{store,operation}          bytes put, got and deleted (operation:
                                                          put|get|delete)
    offload_payload_operation_seconds{store,operation}    one call, retries included
    offload_payload_errors_total{store,operation,reason}  reason: missing|corrupt|unavailable|refused
    offload_payload_spool_bytes{medium}                   gateway: uploads spooled right now
                                                          (medium: memory|disk)
    offload_payload_spool_full_total{medium}              gateway: uploads refused because the
                                                          spool's disk budget was used up

The S3 store counts its own calls; the job store counts inline payloads with `done("redis", ...)`.
Every metric has labels, so none exists before first use (a prefork worker switches
prometheus_client to multiprocess mode after importing this), and every label set is bounded.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PAYLOAD_BYTES = Counter("offload_payload_bytes_total", "Payload bytes put, got and deleted, by store",
                        ["store", "operation"])
PAYLOAD_SECONDS = Histogram("offload_payload_operation_seconds", "Duration of one payload store call, retries included",
                            ["store", "operation"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
PAYLOAD_ERRORS = Counter("offload_payload_errors_total", "Payload store calls that failed, by reason",
                         ["store", "operation", "reason"])
SPOOL_BYTES = Gauge("offload_payload_spool_bytes", "Bytes of uploads spooled by this gateway right now",
                    ["medium"], multiprocess_mode="livesum")
SPOOL_FULL = Counter("offload_payload_spool_full_total",
                     "Uploads refused (503) because the gateway's spool disk budget was used up", ["medium"])


def done(store: str, operation: str, nbytes: int, seconds: float) -> None:
    PAYLOAD_BYTES.labels(store=store, operation=operation).inc(nbytes)
    PAYLOAD_SECONDS.labels(store=store, operation=operation).observe(seconds)


def failed(store: str, operation: str, reason: str) -> None:
    PAYLOAD_ERRORS.labels(store=store, operation=operation, reason=reason).inc()
