"""Redis key names. Every key Offload writes is built here (the queue lists are in routing.py).

    offload:job:{id}              hash    the job record (fields of offload_core.jobs.record.Job)
    offload:job:{id}:payload      string  the upload (OCR) or request JSON (LLM)
    offload:job:{id}:result       string  the result JSON, written once
    offload:job:{id}:events       stream  state / progress / token events, capped
    offload:job:{id}:lease        string  the worker holding the job; expires unless renewed
    offload:tenant:{t}:jobs       zset    the tenant's job ids by creation time (listing)
    offload:tenant:{t}:active     string  count of the tenant's unfinished jobs (quota)
    offload:tenant:{t}:rate:{m}   string  submissions in minute m (rate limit)
    offload:idem:{t}:{key}        string  "<job id> <body digest>" for Idempotency-Key
    offload:running               zset    running job ids by start time
    offload:pending               zset    queued and retrying job ids by when their message is due
                                          on a queue (the lost-message sweep, sweeper.py)
    offload:sweeper               string  lock: one gateway replica sweeps per interval
    offload:dead                  zset    dead job ids by time of death (dead letters)
    offload:counters              hash    lifetime totals (submitted, succeeded, ...)
"""

from __future__ import annotations

PREFIX = "offload"
RUNNING = f"{PREFIX}:running"
DEAD = f"{PREFIX}:dead"
COUNTERS = f"{PREFIX}:counters"
PENDING = f"{PREFIX}:pending"
SWEEPER_LOCK = f"{PREFIX}:sweeper"
# kombu's Redis transport keeps a delivered, unacknowledged message in this hash (its default
# `unacked_key`) until the worker acknowledges it.
KOMBU_UNACKED = "unacked"


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def payload(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:payload"


def result(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:result"


def events(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def lease(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:lease"


def tenant_jobs(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}:jobs"


def tenant_active(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}:active"


def tenant_rate(tenant: str, minute: int) -> str:
    return f"{PREFIX}:tenant:{tenant}:rate:{minute}"


def idempotency(tenant: str, key: str) -> str:
    return f"{PREFIX}:idem:{tenant}:{key}"
