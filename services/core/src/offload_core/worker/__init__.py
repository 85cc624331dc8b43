"""A worker process: its start, the runner every job goes through, the handler contract,
leases, and the small HTTP port for probes and metrics."""
