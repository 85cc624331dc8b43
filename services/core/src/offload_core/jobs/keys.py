"""Redis key names. Every key Offload writes is built here (the queue lists are in queue/routing.py).

    offload:job:{id}              hash    the job record (fields of offload_core.jobs.record.Job), and
                                          with it the job's input (`payload`, or `payload_ref` when it
                                          lives in object storage) and its result (`result`)
    offload:job:{id}:events       stream  state / progress / token events, capped; expires a short
                                          grace after the job ends (its record then replays the end)
    offload:tenant:{t}:jobs       zset    the tenant's job ids by creation time (listing)
    offload:tenant:{t}:usage      hash    `active` (unfinished jobs) and `bytes` (their input bytes, and
                                          the tenant's files): the quotas the submit script checks;
                                          `batches` (batches not yet ended)
    offload:tenant:{t}:dead       zset    the tenant's dead job ids by time of death
    offload:tenant:{t}:rate:{m}   string  submissions in minute m (rate limit)
    offload:idem:{t}:{key}        string  "<job id> <body digest>" for Idempotency-Key
    offload:pending               zset    queued job ids by when they were queued (lost-message sweep)
    offload:delayed               zset    scheduled and retrying job ids by when they are due (mover)
    offload:waiting               zset    pipeline steps waiting for the steps before them, scored by
                                          when to cancel them (+inf while they can still run)
    offload:running:{type}        zset    running job ids by when their lease lapses (ms); a lapsed
                                          one's worker is gone (the lease reaper)
    offload:dead                  zset    dead job ids of every tenant by time of death
    offload:webhooks              zset    the webhook outbox: `<job id>/<final event id>` by when its
                                          next delivery attempt is due (maintenance/webhooks.py)
    offload:counters              hash    lifetime totals, `<type>:<outcome>`
    offload:stats:{m}             string  a snapshot of the counters taken in minute m (throughput),
                                          kept two hours (offload_core/jobs/throughput.py)
    offload:workers               zset    the worker registry: worker ids by when each was last seen
                                          (offload_core/fleet); trimmed past the lost-worker retention
    offload:worker:{id}           hash    one worker process's entry (type, host, pid, pool, counts,
                                          current jobs); expires a retention after its last beat
    offload:pipeline:{id}         hash    a pipeline: its steps and their jobs, how many jobs are open
                                          and succeeded; expires `retention_seconds` after its last job ends
    offload:pipeline:{id}:events  stream  its jobs' state changes and its end, capped
    offload:tenant:{t}:pipelines  zset    the tenant's pipeline ids by creation time
    offload:file:{id}             hash    a file (Files API): name, purpose, size, tenant, expiry, the
                                          batch reading it (`pinned_by`), its S3 object (`content_ref`)
    offload:file:{id}:content     string  its bytes, when they are not in S3 (read in ranges)
    offload:tenant:{t}:files      zset    the tenant's file ids by creation time
    offload:files:expiry          zset    file ids by when they expire (the expiry sweep deletes them
                                          and gives their bytes back to the tenant's byte quota)
    offload:batch:{id}            hash    a batch (Batches API): its status, counts and feeder cursor;
                                          kept OFFLOAD_FILE_RETENTION_SECONDS after it ends
    offload:batch:{id}:inflight   set     its line jobs submitted and not yet collected (at most the
                                          tenant's OFFLOAD_BATCH_MAX_IN_FLIGHT_PER_TENANT)
    offload:batch:{id}:done       set     its line jobs that ended (added by finish.lua), for the
                                          coordinator to collect
    offload:batch:{id}:output     hash    line number -> output line (JSONL) of a line that succeeded
    offload:batch:{id}:errors     hash    line number -> error line of a line that did not
                                          (these four are deleted when the batch ends: its output and
                                          error lines are then files)
    offload:tenant:{t}:batches    zset    the tenant's batch ids by creation time
    offload:batches               set     batches not yet ended (the coordinator's work list)
    offload:lock:{task}           string  one gateway replica runs a maintenance task per interval
    offload:capacity:{name}       zset    a global in-flight cap (e.g. `llm:<model>`): holder job ids by
                                          when their slot lapses (jobs/scripts/capacity.lua)
    offload:tenant:{t}:tokens:{d} hash    LLM token usage of day d (YYYYMMDD, UTC): `<model>|prompt`,
                                          `<model>|completion`, `<model>|jobs`; written by finish.lua with
                                          the result, expires OFFLOAD_LLM_USAGE_RETENTION_DAYS after d
    offload:tenant:{t}:tpm:{m}    string  tokens asked for in minute m (OFFLOAD_LLM_TOKENS_PER_MINUTE)
    offload:ocr:languages         zset    OCR languages the OCR workers have installed, by when a worker
                                          last said so (the gateway checks `languages` against it)

No job key expires while its job is unfinished: every state change sets the TTLs (the record and
its events expire only once the job is terminal, `retention_seconds` after its end).
"""

from __future__ import annotations

import time

from offload_core.types import JobType

PREFIX = "offload"
DEAD = f"{PREFIX}:dead"
COUNTERS = f"{PREFIX}:counters"
PENDING = f"{PREFIX}:pending"
DELAYED = f"{PREFIX}:delayed"
WAITING = f"{PREFIX}:waiting"
BATCHES = f"{PREFIX}:batches"
FILES_EXPIRY = f"{PREFIX}:files:expiry"
WEBHOOKS = f"{PREFIX}:webhooks"
WORKERS = f"{PREFIX}:workers"
# kombu's Redis transport keeps a delivered, unacknowledged message in this hash (its default
# `unacked_key`) and its delivery tag in this sorted set until the worker acknowledges it.
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def events(job_id: str) -> str:
    # The job's key and ":events": finish.lua builds it so for the pipeline steps it releases.
    return f"{job(job_id)}:events"


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


def capacity(name: str) -> str:
    return f"{PREFIX}:capacity:{name}"


def tenant_tokens(tenant: str, day: str) -> str:
    return f"{PREFIX}:tenant:{tenant}:tokens:{day}"


def tenant_tpm(tenant: str, minute: int) -> str:
    return f"{PREFIX}:tenant:{tenant}:tpm:{minute}"


OCR_LANGUAGES = f"{PREFIX}:ocr:languages"


def usage_day(when: float) -> str:
    """The UTC day of a Unix time, as the token usage keys name it: YYYYMMDD."""
    return time.strftime("%Y%m%d", time.gmtime(when))


def stats(minute: int) -> str:
    return f"{PREFIX}:stats:{minute}"


def worker(worker_id: str) -> str:
    return f"{PREFIX}:worker:{worker_id}"


def lock(task: str) -> str:
    return f"{PREFIX}:lock:{task}"


def finish_keys(job_id: str, job_type: JobType | str, tenant: str, queue: str, *,
                now: float | None = None) -> dict[str, str]:
    """The keys of the finish script (scripts/finish.lua) for one job: every caller names the same.
    The token usage key is of the day of `now` (only an LLM job's result writes to it)."""
    return dict(
        job_key=job(job_id), events_key=events(job_id), running_key=running(job_type),
        usage_key=tenant_usage(tenant), counters_key=COUNTERS, dead_key=DEAD, tenant_dead_key=tenant_dead(tenant),
        delayed_key=DELAYED, pending_key=PENDING, waiting_key=WAITING, queue_key=queue, webhooks_key=WEBHOOKS,
        unacked_key=KOMBU_UNACKED, unacked_index_key=KOMBU_UNACKED_INDEX,
        tokens_key=tenant_tokens(tenant, usage_day(time.time() if now is None else now)),
    )


def pipeline(pipeline_id: str) -> str:
    return f"{PREFIX}:pipeline:{pipeline_id}"


def pipeline_events(pipeline_id: str) -> str:
    return f"{PREFIX}:pipeline:{pipeline_id}:events"


def tenant_pipelines(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}:pipelines"


def file(file_id: str) -> str:
    return f"{PREFIX}:file:{file_id}"


def file_content(file_id: str) -> str:
    return f"{PREFIX}:file:{file_id}:content"


def tenant_files(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}:files"


def batch(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}"


def batch_done(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:done"


def batch_inflight(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:inflight"


def batch_output(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:output"


def batch_errors(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:errors"


def tenant_batches(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}:batches"
