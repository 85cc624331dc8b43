"""How every process reports on itself: JSON logs, tracing (set-up and job trace context) and
Prometheus exposition (including a prefork worker's sum over its processes)."""
