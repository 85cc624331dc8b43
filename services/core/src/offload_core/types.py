"""The names every part of Offload shares: job types, priorities, states and their legal moves.

Nothing else in the code base spells these strings; import them from here.
"""

from __future__ import annotations

from enum import StrEnum


class JobType(StrEnum):
    OCR = "ocr"
    LLM = "llm"
    # Text embeddings, run by the LLM workers (an OpenAI-compatible /v1/embeddings backend).
    EMBED = "embed"
    # The diagnostic type: sleeps or fails on demand, for `helm test`, synthetic probes and the
    # benchmarks. It has no worker of its own: every worker consumes its queues.
    PROBE = "probe"


# The job types that have workers (and a Deployment, a ScaledObject, time limits) of their own.
WORKER_TYPES: tuple[JobType, ...] = (JobType.OCR, JobType.LLM)
# What each worker type runs: its own jobs first, then the others it serves, at each priority.
SERVED_BY: dict[JobType, tuple[JobType, ...]] = {
    JobType.OCR: (JobType.OCR, JobType.PROBE),
    JobType.LLM: (JobType.LLM, JobType.EMBED, JobType.PROBE),
}


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Strict consumption order: a worker drains `high` before it looks at `normal`, and so on.
PRIORITY_ORDER: tuple[Priority, ...] = (Priority.HIGH, Priority.NORMAL, Priority.LOW)


class JobState(StrEnum):
    WAITING = "waiting"  # a pipeline step waiting for the steps before it (pipelines/)
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED}
)

# States in which a job waits for a time, in the delayed set (offload:delayed), with no message
# on any queue: a scheduled job until its run_at, a retrying one until its backoff ends.
DELAYED_STATES: frozenset[JobState] = frozenset({JobState.SCHEDULED, JobState.RETRYING})

# The only legal moves (DESIGN §3). The Lua scripts enforce the same table;
# tests/core/test_transitions.py runs every script from every state and checks the two agree.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # A pipeline step is queued when the last step it waits for succeeds; it can be cancelled before.
    JobState.WAITING: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    # The delayed-set mover queues a scheduled job at its time; it can be cancelled before.
    JobState.SCHEDULED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.RETRYING, JobState.DEAD, JobState.CANCELLED,
         # The run's worker was lost (its lease lapsed): the job goes back to the head of its queue.
         JobState.QUEUED}
    ),
    # The mover queues a retrying job when its backoff ends.
    JobState.RETRYING: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    # Requeue (POST /v1/jobs/{id}/retry) is the one way out of a failed or dead job.
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.DEAD: frozenset({JobState.QUEUED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class EventKind(StrEnum):
    STATE = "state"
    PROGRESS = "progress"
    TOKEN = "token"
