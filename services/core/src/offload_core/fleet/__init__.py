"""The fleet: the worker registry (registry.py), written by every worker process, read by the
status service (GET /v1/workers, offload_workers_live, the dashboard's Workers panel)."""
