"""The job counters and histograms, observed where a job's state changes.

    offload_jobs_submitted_total{type,priority}            gateway: stored and queued (202)
    offload_jobs_finished_total{type,priority,outcome}     worker (or gateway, for a queued job
                                                           cancelled): succeeded|failed|dead|cancelled
    offload_job_retries_total{type,priority}               worker: a run ended in a scheduled retry
    offload_job_run_seconds{type,outcome}                  worker: claim -> outcome of one run
    offload_job_queue_wait_seconds{type,priority}          worker: enqueue -> start of the first run
    offload_lost_messages_requeued_total{type}             gateway: the lost-message sweep gave a
                                                           job a new queue message (sweeper.py)
    offload_lost_runs_requeued_total{type}                 gateway: a running job whose lease lapsed
                                                           (its worker is gone) was queued again
    offload_delayed_jobs_moved_total{type}                 gateway: scheduled or retrying jobs queued
                                                           at their time (maintenance/mover.py)
    offload_missing_records_total{type}                    worker: a message named a job with no record
    offload_llm_tokens_total{tenant,model,kind}            worker: tokens of succeeded LLM jobs, as their
                                                           server reported them (kind: prompt|completion),
                                                           counted when the result is recorded
    offload_capacity_waits_total{name}                     worker: runs that waited for a slot of a
                                                           global in-flight cap (worker/capacity.py)

Label cardinality of the token counter: `model` is a name of the model map (bounded by it);
`tenant` takes the first OFFLOAD_LLM_USAGE_METRIC_TENANTS tenants a worker process sees, and
`_other` for any after them (the exact per-tenant figures are in GET /v1/usage).

Workers observe these in their job processes; `offload_core.observability.multiprocess` makes the
worker's port report the sum over all of them (prefork), including processes already recycled.
Every metric has labels, so no value exists until first use: that lets a worker switch
prometheus_client to multiprocess mode after this module was imported.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import Counter, Histogram

from offload_core.jobs.record import Job
from offload_core.types import JobState, JobType, Priority

JOBS_SUBMITTED = Counter("offload_jobs_submitted_total", "Jobs accepted: stored and queued by the gateway",
                         ["type", "priority"])
JOBS_FINISHED = Counter("offload_jobs_finished_total", "Jobs that reached a terminal state",
                        ["type", "priority", "outcome"])
JOB_RETRIES = Counter("offload_job_retries_total", "Runs that ended in a scheduled retry", ["type", "priority"])
JOB_RUN_SECONDS = Histogram(
    "offload_job_run_seconds", "Duration of one run of a job, from its claim to its outcome", ["type", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200))
JOB_QUEUE_WAIT_SECONDS = Histogram(
    "offload_job_queue_wait_seconds", "Time from enqueue to the start of a job's first run", ["type", "priority"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
LOST_MESSAGES_REQUEUED = Counter("offload_lost_messages_requeued_total",
                                 "Jobs queued again because their queue message was lost", ["type"])
LOST_RUNS_REQUEUED = Counter("offload_lost_runs_requeued_total",
                             "Running jobs queued again because their lease lapsed (their worker was lost)", ["type"])
DELAYED_MOVED = Counter("offload_delayed_jobs_moved_total",
                        "Scheduled and retrying jobs queued when they became due", ["type"])
MISSING_RECORDS = Counter("offload_missing_records_total", "Messages for a job that has no record", ["type"])
LLM_TOKENS = Counter("offload_llm_tokens_total", "Tokens of succeeded LLM jobs, as their model's server reported them",
                     ["tenant", "model", "kind"])
CAPACITY_WAITS = Counter("offload_capacity_waits_total", "Runs that waited for a slot of a global in-flight cap",
                         ["name"])

OTHER_TENANTS = "_other"
_labelled_tenants: set[str] = set()
_labelled_lock = threading.Lock()


def llm_tokens(tenant: str, model: str, prompt: int, completion: int, *, max_tenants: int) -> None:
    """Count a recorded result's tokens; tenants beyond the first `max_tenants` share one label."""
    with _labelled_lock:
        if tenant not in _labelled_tenants:
            if len(_labelled_tenants) >= max_tenants:
                tenant = OTHER_TENANTS
            else:
                _labelled_tenants.add(tenant)
    LLM_TOKENS.labels(tenant=tenant, model=model, kind="prompt").inc(prompt)
    LLM_TOKENS.labels(tenant=tenant, model=model, kind="completion").inc(completion)


def capacity_wait(name: str) -> None:
    CAPACITY_WAITS.labels(name=name).inc()


def submitted(job_type: JobType, priority: Priority) -> None:
    JOBS_SUBMITTED.labels(type=job_type.value, priority=priority.value).inc()


def lost_message_requeued(job_type: JobType) -> None:
    LOST_MESSAGES_REQUEUED.labels(type=job_type.value).inc()


def lost_run_requeued(job_type: JobType) -> None:
    LOST_RUNS_REQUEUED.labels(type=job_type.value).inc()


def delayed_moved(job_type: JobType) -> None:
    DELAYED_MOVED.labels(type=job_type.value).inc()


def missing_record(job_type: JobType) -> None:
    MISSING_RECORDS.labels(type=job_type.value).inc()


def run_started(job: Job) -> None:
    """A run was claimed. Queue wait is observed for first runs only: a retry's record no longer
    says when its message became due, and its wait would mostly be the chosen backoff."""
    if job.attempts == 1 and job.queued_at is not None and job.started_at is not None:
        JOB_QUEUE_WAIT_SECONDS.labels(type=job.type.value, priority=job.priority.value).observe(
            max(0.0, job.started_at - job.queued_at))


def run_ended(job: Job, outcome: JobState) -> None:
    """A run's outcome was recorded (a terminal state, or `retrying`)."""
    if job.started_at is not None:
        JOB_RUN_SECONDS.labels(type=job.type.value, outcome=outcome.value).observe(
            max(0.0, time.time() - job.started_at))
    if outcome is JobState.RETRYING:
        JOB_RETRIES.labels(type=job.type.value, priority=job.priority.value).inc()
    else:
        finished(job.type, job.priority, outcome)


def finished(job_type: JobType, priority: Priority, outcome: JobState) -> None:
    """A job ended without a run of ours to time (cancelled while queued, dead at its claim)."""
    JOBS_FINISHED.labels(type=job_type.value, priority=priority.value, outcome=outcome.value).inc()
