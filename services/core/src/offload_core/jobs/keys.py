"""Redis key names. Every key Offload writes is built here (the queue lists are in queue/routing.py).

    offload:job:{id}              hash    the job record (fields of offload_core.jobs.record.Job), and
                                          with it the job's input (`payload`, or `payload_ref` when it
                                          lives in object storage) and its result (`result`)
    offload:job:{id}:events       stream  state / progress / token events, capped; expires a short
                                          grace after the job ends (its record then replays the end)
    offload:tenant:{t}:jobs       zset    the tenant's job ids by creation time (listing)
    offload:tenant:{t}:usage      hash    `active` (unfinished jobs) and `bytes` (their input bytes):
                                          the quotas the submit script checks
    offload:tenant:{t}:dead       zset    the tenant's dead job ids by time of death
    offload:tenant:{t}:rate:{m}   string  submissions in minute m (rate limit)
    offload:idem:{t}:{key}        string  "<job id> <body digest>" for Idempotency-Key
    offload:pending               zset    queued job ids by when they were queued (lost-message sweep)
    offload:delayed               zset    scheduled and retrying job ids by when they are due (mover)
    offload:running:{type}        zset    running job ids by when their lease lapses (ms); a lapsed
                                          one's worker is gone (the lease reaper)
    offload:dead                  zset    dead job ids of every tenant by time of death
    offload:webhooks              zset    the webhook outbox: `<job id>/<final event id>` by when its
                                          next delivery attempt is due (maintenance/webhooks.py)
    offload:counters              hash    lifetime totals, `<type>:<outcome>`
    offload:stats:{m}             string  a snapshot of the counters taken in minute m (throughput)
    offload:lock:{task}           string  one gateway replica runs a maintenance task per interval

No job key expires while its job is unfinished: every state change sets the TTLs (the record and
its events expire only once the job is terminal, `retention_seconds` after its end).
"""

from __future__ import annotations

from offload_core.types import JobType

PREFIX = "offload"
DEAD = f"{PREFIX}:dead"
COUNTERS = f"{PREFIX}:counters"
PENDING = f"{PREFIX}:pending"
DELAYED = f"{PREFIX}:delayed"
WEBHOOKS = f"{PREFIX}:webhooks"
# kombu's Redis transport keeps a delivered, unacknowledged message in this hash (its default
# `unacked_key`) and its delivery tag in this sorted set until the worker acknowledges it.
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def events(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def running(job_type: JobType | str) -> str:
    return f"{PREFIX}:running:{JobType(job_type).value}"


def tenant_jobs(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}:jobs"


def tenant_usage(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}:usage"


def tenant_dead(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}:dead"


def tenant_rate(tenant: str, minute: int) -> str:
    return f"{PREFIX}:tenant:{tenant}:rate:{minute}"


def idempotency(tenant: str, key: str) -> str:
    return f"{PREFIX}:idem:{tenant}:{key}"


def stats(minute: int) -> str:
    return f"{PREFIX}:stats:{minute}"


def lock(task: str) -> str:
    return f"{PREFIX}:lock:{task}"


def finish_keys(job_id: str, job_type: JobType | str, tenant: str, queue: str) -> dict[str, str]:
    """The keys of the finish script (scripts/finish.lua) for one job: every caller names the same."""
    return dict(
        job_key=job(job_id), events_key=events(job_id), running_key=running(job_type),
        usage_key=tenant_usage(tenant), counters_key=COUNTERS, dead_key=DEAD, tenant_dead_key=tenant_dead(tenant),
        delayed_key=DELAYED, pending_key=PENDING, queue_key=queue, webhooks_key=WEBHOOKS,
        unacked_key=KOMBU_UNACKED, unacked_index_key=KOMBU_UNACKED_INDEX,
    )
